"""Run-level bootstrap: seeded, resamples runs not rows, propagates to predictions and derived values."""

import numpy as np
import pytest
from analysis_test_constants import REDUCED_GRID

from analysis import (
    BILLION,
    FitError,
    bootstrap_chinchilla,
    bootstrap_fit,
    compute_optimal_allocation,
    fit_chinchilla,
    fit_power_law,
    prediction_band,
)

SIZES = np.geomspace(18.5e6, 2.0e9, 10)


def _noisy_law(seed=0):
    generator = np.random.default_rng(seed)
    return (2.0 * SIZES / BILLION) ** -0.23 * np.exp(generator.normal(0, 0.01, SIZES.size))


def test_power_law_bootstrap_is_seeded_and_covers_the_truth():
    loss = _noisy_law()
    first = bootstrap_fit(
        fit_power_law, SIZES, loss, n_resamples=300, seed=3, x_unit_scale=BILLION, predict_at=(np.array([4e9]),)
    )
    again = bootstrap_fit(
        fit_power_law, SIZES, loss, n_resamples=300, seed=3, x_unit_scale=BILLION, predict_at=(np.array([4e9]),)
    )
    assert first.intervals == again.intervals
    low, high = first.intervals["alpha"]
    assert low < first.estimate["alpha"] < high and low < -0.23 < high
    assert high - low < 0.05
    prediction_low, prediction_high = first.prediction_intervals[0]
    assert prediction_low < (2.0 * 4) ** -0.23 < prediction_high


def test_resampling_is_over_runs_not_rows():
    # Each run contributes 3 identical checkpoints. Resampling rows would break runs apart; resampling
    # runs keeps every run's rows together, so each resample holds a multiple of 3 rows per run.
    sizes, loss = np.repeat(SIZES, 3), np.repeat(_noisy_law(), 3)
    runs = np.repeat(np.arange(SIZES.size), 3)
    seen_lengths = []

    def recording_fit(x, y):
        seen_lengths.append(np.unique(x, return_counts=True)[1])
        return fit_power_law(x, y)

    result = bootstrap_fit(recording_fit, sizes, loss, groups=runs, n_resamples=20, seed=0)
    assert result.options["resample_unit"] == "run"
    assert all(np.all(counts % 3 == 0) for counts in seen_lengths)


def test_failed_resamples_are_counted_not_hidden():
    # many resamples hold fewer than the 3 distinct sizes a 2-parameter law needs
    sizes = np.array([1e8, 1e8, 1e8, 2e8, 4e8])
    result = bootstrap_fit(fit_power_law, sizes, [3.0, 3.1, 2.9, 2.5, 2.2], n_resamples=50, seed=0)
    assert 0 < result.n_failed < 50
    assert len(result.samples) == 50 - result.n_failed


def test_prediction_band_contains_the_fit():
    loss = _noisy_law()
    fit = fit_power_law(SIZES, loss, x_unit_scale=BILLION)
    result = bootstrap_fit(fit_power_law, SIZES, loss, n_resamples=100, seed=0, x_unit_scale=BILLION)
    grid = np.geomspace(1e7, 1e10, 5)
    band = prediction_band(fit, result, grid)
    assert np.all(band[:, 0] <= fit.predict(grid)) and np.all(fit.predict(grid) <= band[:, 1])
    assert np.all(np.diff(band[:, 1] - band[:, 0])[2:] > 0)  # wider further out


@pytest.mark.parametrize("form", ["var", "offset"])
def test_prediction_band_is_the_percentiles_of_each_samples_prediction(form):
    """A power law's band is computed for all samples at once: the numbers must be those of
    predicting with each sample's parameters one by one."""
    from dataclasses import replace

    loss = _noisy_law() + (1.5 if form == "offset" else 0.0)
    options = {"x_unit_scale": BILLION, "form": form}
    fit = fit_power_law(SIZES, loss, **options)
    result = bootstrap_fit(fit_power_law, SIZES, loss, n_resamples=60, seed=1, **options)
    grid = np.geomspace(1e7, 1e10, 7)
    one_by_one = np.stack(
        [replace(fit, **row).predict(grid) for row in result.samples.drop(columns="r").to_dict(orient="records")]
    )
    expected = np.stack([np.percentile(one_by_one, 2.5, axis=0), np.percentile(one_by_one, 97.5, axis=0)], axis=1)
    np.testing.assert_array_equal(prediction_band(fit, result, grid), expected)


def test_chinchilla_bootstrap_has_the_published_width(reference_frame):
    N, D, loss = reference_frame["Model Size"], reference_frame["tokens"], reference_frame["loss"]
    fit = fit_chinchilla(N, D, loss, grid=REDUCED_GRID)
    result = bootstrap_chinchilla(
        N,
        D,
        loss,
        fit=fit,
        n_resamples=300,
        seed=0,
        derived=lambda f: {"N_opt": float(compute_optimal_allocation(f, 5.76e23).N_opt)},
    )
    assert result.n_failed == 0
    # Published (4,000 resamples): E (1.769, 1.871), alpha (0.317, 0.373), beta (0.331, 0.415).
    for name, (low, high) in {"E": (1.769, 1.871), "alpha": (0.317, 0.373), "beta": (0.331, 0.415)}.items():
        measured_low, measured_high = result.intervals[name]
        assert measured_low == pytest.approx(low, abs=0.012), name
        assert measured_high == pytest.approx(high, abs=0.012), name
    assert result.intervals["N_opt"][0] < result.estimate["N_opt"] < result.intervals["N_opt"][1]


def test_bootstrap_options_are_validated():
    with pytest.raises(FitError, match="n_resamples"):
        bootstrap_fit(fit_power_law, SIZES, _noisy_law(), n_resamples=1)
    with pytest.raises(FitError, match="confidence"):
        bootstrap_fit(fit_power_law, SIZES, _noisy_law(), confidence=95)
