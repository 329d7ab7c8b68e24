"""Power-law fits recover known laws and refuse bad input with a clear message."""

import numpy as np
import pytest

from analysis import BILLION, DataError, FitError, fit_power_law

SIZES = np.geomspace(18.5e6, 2.0e9, 12)  # the VAR paper's range of N


def test_var_form_recovers_the_papers_last_scale_law():
    generator = np.random.default_rng(0)
    loss = (2.0 * SIZES / BILLION) ** -0.23 * np.exp(generator.normal(0, 0.005, SIZES.size))
    fit = fit_power_law(SIZES, loss, form="var", x_unit_scale=BILLION, x_unit="B")
    assert fit.alpha == pytest.approx(-0.23, abs=0.005)
    assert fit.beta == pytest.approx(2.0, rel=0.05)
    assert fit.r < -0.999
    assert fit.n_points == 12 and fit.converged
    assert fit.predict(BILLION) == pytest.approx((2.0) ** -0.23, rel=0.01)
    assert "(2 N [B])^-0.23" in fit.law("L", "N")


def test_unit_scale_changes_beta_not_alpha():
    loss = (2.0 * SIZES / BILLION) ** -0.23
    in_billions = fit_power_law(SIZES, loss, x_unit_scale=BILLION)
    raw = fit_power_law(SIZES, loss)
    assert in_billions.alpha == pytest.approx(raw.alpha)
    assert raw.beta == pytest.approx(in_billions.beta / BILLION, rel=1e-9)
    assert raw.predict(SIZES) == pytest.approx(in_billions.predict(SIZES))


def test_irreducible_term_is_subtracted_before_the_log_fit():
    loss = 4.5 + (2.0 * SIZES / BILLION) ** -0.23
    fit = fit_power_law(SIZES, loss, x_unit_scale=BILLION, irreducible=4.5)
    assert (fit.alpha, fit.beta, fit.E) == pytest.approx((-0.23, 2.0, 4.5), rel=1e-9)
    assert fit.inverse(fit.predict(3e8)) == pytest.approx(3e8, rel=1e-9)


def test_offset_form_recovers_irreducible_loss_and_exponent():
    generator = np.random.default_rng(1)
    compute = np.geomspace(1e15, 1e21, 25)
    loss = 1.7 + (3e17 / compute) ** 0.15 * np.exp(generator.normal(0, 0.002, compute.size))
    fit = fit_power_law(compute, loss, form="offset")
    assert fit.E == pytest.approx(1.7, abs=0.05)
    assert fit.alpha == pytest.approx(0.15, abs=0.015)
    assert fit.x0 == pytest.approx(3e17, rel=0.5)
    assert 0 <= fit.E < loss.min()
    assert fit.inverse(2.0) == pytest.approx(3e17 / 0.3 ** (1 / fit.alpha), rel=0.3)


def test_fewer_points_than_parameters_is_an_error():
    with pytest.raises(FitError, match="2 free parameters but got only 1"):
        fit_power_law([1e9], [2.0])
    with pytest.raises(FitError, match="3 free parameters"):
        fit_power_law([1e9, 2e9], [2.0, 1.9], form="offset")


@pytest.mark.parametrize(
    "x, y, message",
    [
        ([1.0, 2.0, 0.0], [1.0, 0.9, 0.8], "x must be > 0"),
        ([1.0, 2.0, 3.0], [1.0, -0.9, 0.8], "y must be > 0"),
        ([1.0, np.nan, 3.0], [1.0, 0.9, 0.8], "x has 1 NaN"),
        ([1.0, 2.0, 3.0], [1.0, 0.9], "one common length"),
    ],
)
def test_bad_input_is_named(x, y, message):
    with pytest.raises(DataError, match=message):
        fit_power_law(x, y)


def test_unknown_form_and_constant_x_are_errors():
    with pytest.raises(FitError, match="form must be one of"):
        fit_power_law([1, 2], [2, 1], form="exponential")
    with pytest.raises(FitError, match="all x values are equal"):
        fit_power_law([3, 3, 3], [2, 1, 1.5])
    with pytest.raises(DataError, match="irreducible"):
        fit_power_law([1, 2, 3], [2.0, 1.5, 1.2], irreducible=1.3)


def test_a_flat_metric_is_a_clear_error_not_an_infinite_beta():
    with pytest.raises(FitError, match="no power-law trend"):
        fit_power_law([1e7, 1e8, 1e9], [0.9, 0.9 * (1 + 1e-15), 0.9])


NO_FREEDOM = [("var", [1e8, 2e8]), ("var", [1e8, 1e8, 2e8]), ("offset", [1e8, 2e8, 4e8])]


@pytest.mark.parametrize(("form", "sizes"), NO_FREEDOM)
def test_a_fit_without_a_degree_of_freedom_is_refused(form, sizes):
    """Through every point, a law shows r = +-1 and no uncertainty as if it were certain."""
    loss = 3.0 * (np.asarray(sizes) / 1e8) ** -0.2
    with pytest.raises(FitError, match="no degree of freedom"):
        fit_power_law(sizes, loss, form=form)


def test_three_distinct_sizes_fit_the_var_form():
    fit = fit_power_law([1e8, 2e8, 4e8], [3.0, 2.7, 2.5])
    assert fit.n_points == 3 and -1 < fit.r < 0


def test_pearson_r_is_scipys_bit_for_bit():
    """The fits compute r without scipy's p-value; the number must not change."""
    from scipy import stats

    from analysis.power_law import pearson_r

    generator = np.random.default_rng(0)
    for _ in range(300):
        n = int(generator.integers(3, 30))
        x = np.log(np.geomspace(1e5, 1e9, n) * generator.uniform(0.5, 2.0, n))
        y = generator.uniform(-1, 1) * x + generator.normal(size=n) * 10 ** generator.uniform(-6, 0)
        assert pearson_r(x, y) == float(stats.pearsonr(x, y).statistic)


@pytest.mark.parametrize("form", ["var", "offset"])
def test_a_flat_metric_is_a_fit_error_not_a_crash(form):
    # Before: the offset form's profile took rounding noise for an exponent below its optimiser's
    # bound, and scipy raised "Initial guess is outside of provided bounds" out of varscale fit.
    with pytest.raises(FitError, match="all y values are equal"):
        fit_power_law([1e6, 2e6, 4e6, 8e6, 16e6], [500.0] * 5, form=form)
