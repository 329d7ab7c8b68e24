"""bootstrap_frontier is bootstrap_fit(fit_frontier, ...) without a DataFrame per resample: the
same samples, intervals, predictions and failure count, bit for bit."""

import numpy as np
import pandas as pd
import pytest

from analysis.bootstrap import bootstrap_fit
from analysis.frontier import fit_frontier
from analysis.frontier_bootstrap import bootstrap_frontier


def _curves(seed=0):
    """Noisy training curves of 7 runs, with what the frontier must handle: two runs that share a
    point (same compute and loss, different sizes: the tie goes to the run drawn first), a NaN
    loss, a zero-compute point, rows of another metric, and a run with no point of the metric."""
    generator = np.random.default_rng(seed)
    rows = []
    sizes = (1e6, 2e6, 4e6, 8e6, 1.6e7, 3.2e7)
    for index, size in enumerate(sizes):
        for step, tokens in enumerate(np.geomspace(1e6, 1e9, 9)):
            value = (size / 1e12) ** -0.1 + (tokens / 1e14) ** -0.1 + generator.normal(0, 0.02)
            rows.append(("run%d" % index, "test_loss_last", step, value, 6 * size * tokens, size))
            rows.append(("run%d" % index, "test_error_avg", step, value / 10, 6 * size * tokens, size))
    rows.append(("twin", "test_loss_last", 0, rows[20][3], rows[20][4], 5e6))  # run1's point, another size
    rows.append(("run2", "test_loss_last", 9, np.nan, 1e20, 4e6))
    rows.append(("run3", "test_loss_last", 10, 0.1, 0.0, 8e6))
    rows.append(("other", "test_error_avg", 0, 0.5, 1e16, 1e6))
    curves = pd.DataFrame(rows, columns=["trial_key", "metric", "step", "value", "flops", "params_total"])
    return curves.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # rows in no particular order


def _assert_same(expected, actual):
    pd.testing.assert_frame_equal(actual.samples, expected.samples, check_exact=True)
    assert actual.intervals == expected.intervals and actual.estimate == expected.estimate
    assert (actual.n_failed, actual.n_resamples, actual.seed) == (
        expected.n_failed,
        expected.n_resamples,
        expected.seed,
    )
    assert actual.options == expected.options
    assert np.array_equal(actual.prediction_samples, expected.prediction_samples)
    assert np.array_equal(actual.prediction_intervals, expected.prediction_intervals)


@pytest.mark.parametrize(
    ("metric", "irreducible", "seed", "keep_runs"),
    [
        ("test_loss_last", 0.0, 0, None),
        ("test_loss_last", 0.5, 3, None),
        ("test_error_avg", 0.0, 1, None),
        ("test_loss_last", 0.0, 2, ("run0", "run1", "run5", "twin")),  # few runs: many resamples fail
    ],
)
def test_bootstrap_frontier_is_bootstrap_fit_of_fit_frontier(metric, irreducible, seed, keep_runs):
    curves = _curves(seed)
    if keep_runs:
        curves = curves[curves["trial_key"].isin(keep_runs)].reset_index(drop=True)
    options = dict(n_resamples=150, seed=seed, predict_at=(np.array([1e18]),), metric=metric, irreducible=irreducible)
    expected = bootstrap_fit(fit_frontier, curves, groups="trial_key", **options)
    actual = bootstrap_frontier(curves, groups="trial_key", **options)
    _assert_same(expected, actual)
    assert len(actual.samples) + actual.n_failed == 150
    if keep_runs:
        assert actual.n_failed > 0


def test_bootstrap_frontier_without_sizes_or_predictions():
    curves = _curves().drop(columns="params_total")
    expected = bootstrap_fit(
        fit_frontier, curves, groups="trial_key", n_resamples=50, seed=4, metric="test_loss_last", irreducible=0.0
    )
    actual = bootstrap_frontier(curves, n_resamples=50, seed=4, metric="test_loss_last", irreducible=0.0)
    _assert_same(expected, actual)
    assert "n_exponent" not in actual.samples.columns and actual.prediction_samples is None
