"""The Chinchilla fit reproduces the replication's Huber-minimum estimate on the reference data,
recovers a synthetic law, has a correct analytic gradient, and reports untrustworthy starts."""

from types import SimpleNamespace

import numpy as np
import pytest
from analysis_test_constants import REDUCED_GRID

from analysis import FitError, StartGrid, fit_chinchilla
from analysis.chinchilla import _grid_warnings, chinchilla_objective

PUBLISHED = {"A": 477.8, "B": 2143.9, "E": 1.8172, "alpha": 0.3473, "beta": 0.3672}


def _check_published(fit):
    assert fit.A == pytest.approx(PUBLISHED["A"], rel=0.01)
    assert fit.B == pytest.approx(PUBLISHED["B"], rel=0.01)
    for name in ("E", "alpha", "beta"):
        assert getattr(fit, name) == pytest.approx(PUBLISHED[name], abs=0.002), name
    assert fit.objective == pytest.approx(1.01827e-3, rel=1e-4)
    assert fit.converged and fit.n_points == 240


def test_reproduces_the_replication_estimate_from_a_reduced_grid(reference_frame):
    fit = fit_chinchilla(
        reference_frame["Model Size"], reference_frame["tokens"], reference_frame["loss"], grid=REDUCED_GRID
    )
    _check_published(fit)
    assert fit.n_starts == 32 and fit.warnings == ()
    assert fit.options["reduction"] == "sum" and fit.options["huber_delta"] == 1e-3
    assert fit.predict(7e10, 1.4e12) == pytest.approx(1.8172 + 477.8 / 7e10**0.3473 + 2143.9 / 1.4e12**0.3672, rel=1e-3)


@pytest.mark.slow
def test_reproduces_the_replication_estimate_from_the_full_grid(reference_frame):
    fit = fit_chinchilla(reference_frame["Model Size"], reference_frame["tokens"], reference_frame["loss"])
    _check_published(fit)
    assert fit.n_starts == 4500


def test_recovers_a_synthetic_law():
    generator = np.random.default_rng(0)
    N = np.repeat(np.geomspace(1e7, 1e10, 10), 6)
    D = N * np.tile(np.geomspace(2, 200, 6), 10)
    loss = (1.69 + 406.4 / N**0.34 + 410.7 / D**0.28) * np.exp(generator.normal(0, 0.001, N.size))
    fit = fit_chinchilla(
        N,
        D,
        loss,
        grid=StartGrid(
            alpha_values=(0.0, 0.5),
            beta_values=(0.0, 0.5),
            e_values=(0.0, 0.5),
            a_values=(5.0, 10.0),
            b_values=(5.0, 10.0),
        ),
    )
    assert fit.E == pytest.approx(1.69, abs=0.03)
    assert fit.alpha == pytest.approx(0.34, abs=0.03)
    assert fit.beta == pytest.approx(0.28, abs=0.03)


def test_analytic_gradient_matches_finite_differences(reference_frame):
    log_N = np.log(reference_frame["Model Size"].to_numpy())
    log_D = np.log(reference_frame["tokens"].to_numpy())
    log_loss = np.log(reference_frame["loss"].to_numpy())
    points = np.array([[6.0, 7.5, 0.6, 0.35, 0.37], [10.0, 5.0, 0.0, 1.0, 0.2]])
    _, gradient = chinchilla_objective(points, log_N, log_D, log_loss, 1e-3)
    step = 1e-7
    for column in range(5):
        shift = np.zeros(5)
        shift[column] = step
        plus, _ = chinchilla_objective(points + shift, log_N, log_D, log_loss, 1e-3)
        minus, _ = chinchilla_objective(points - shift, log_N, log_D, log_loss, 1e-3)
        np.testing.assert_allclose(gradient[:, column], (plus - minus) / (2 * step), rtol=1e-4, atol=1e-9)


def test_warns_when_the_optimum_lies_outside_the_grid(reference_frame):
    # e is fixed at -1 in this grid while the optimum has e = log 1.8172 = 0.597.
    grid = StartGrid(
        alpha_values=(0.5,), beta_values=(0.5,), e_values=(-1.0, -0.5, 0.0), a_values=(5.0,), b_values=(5.0,)
    )
    fit = fit_chinchilla(reference_frame["Model Size"], reference_frame["tokens"], reference_frame["loss"], grid=grid)
    assert any("fitted e=" in warning and "outside the start grid" in warning for warning in fit.warnings)


def test_warns_when_the_optimiser_never_left_its_start(reference_frame):
    fit = fit_chinchilla(
        reference_frame["Model Size"],
        reference_frame["tokens"],
        reference_frame["loss"],
        grid=REDUCED_GRID,
        max_iterations=0,
        polish=False,
    )
    assert any("stopped at its start point" in warning for warning in fit.warnings)


def test_warns_when_only_edge_starts_reach_the_best_basin():
    grid = StartGrid(
        alpha_values=(0.0, 0.5, 1.0), beta_values=(0.5,), e_values=(0.0,), a_values=(5.0,), b_values=(5.0,)
    )
    starts = grid.points()
    # Pretend only the alpha = 1.0 start (an edge) reached the best objective.
    batch = SimpleNamespace(iterations_S=np.array([20, 20, 20]), f_S=np.array([2.0, 2.0, 1.0]))
    at_best = np.array([False, False, True])
    warnings = _grid_warnings(grid, starts, batch, at_best, 2, np.array([5.0, 5.0, 0.0, 0.7, 0.5]))
    assert any("alpha on the grid edge" in warning for warning in warnings)
    at_best = np.array([False, True, True])  # the middle start got there too: no warning
    assert not _grid_warnings(grid, starts, batch, at_best, 2, np.array([5.0, 5.0, 0.0, 0.7, 0.5]))


def test_bad_inputs_are_errors():
    with pytest.raises(FitError, match="5 free parameters but got only 4"):
        fit_chinchilla([1e8, 2e8, 3e8, 4e8], [1e9] * 4, [3.0, 2.9, 2.8, 2.7])
    with pytest.raises(ValueError, match="D must be > 0"):
        fit_chinchilla([1e8] * 6, [1e9, 1e9, 0, 1e9, 1e9, 1e9], [3.0] * 6)
    with pytest.raises(ValueError, match="loss has 1 NaN"):
        fit_chinchilla([1e8] * 6, [1e9] * 6, [3.0, np.nan, 3, 3, 3, 3])
    with pytest.raises(FitError, match="StartGrid.a_values"):
        StartGrid(a_values=())
