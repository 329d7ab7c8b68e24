"""IsoFLOP (approach 2), the compute Pareto frontier, and extrapolation checks."""

import numpy as np
import pandas as pd
import pytest
from analysis_test_constants import REDUCED_GRID

from analysis import (
    DataError,
    FitError,
    compute_frontier,
    extrapolation_check,
    fit_chinchilla,
    fit_frontier,
    fit_isoflop,
    fit_power_law,
)
from analysis.isoflop import GRID_BIAS_WARNING


def _chinchilla_loss(N, D):
    return 1.69 + 406.4 / N**0.34 + 410.7 / D**0.28


def _isoflop_runs(centre_offsets=(0.0, 0.0, 0.0, 0.0)):
    """Per budget, 9 sizes spread over a factor 30 around the true optimum (times an offset)."""
    alpha, beta, A, B = 0.34, 0.28, 406.4, 410.7
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    rows = []
    for compute, offset in zip((1e18, 1e19, 1e20, 1e21), centre_offsets, strict=True):
        optimum = G * (compute / 6) ** (beta / (alpha + beta))
        for N in optimum * np.exp(offset) * np.geomspace(1 / 30**0.5, 30**0.5, 9):
            rows.append((N, compute, _chinchilla_loss(N, compute / (6 * N))))
    return pd.DataFrame(rows, columns=["N", "C", "loss"])


def test_isoflop_recovers_the_allocation_exponent_and_warns_about_grid_bias():
    runs = _isoflop_runs()
    fit = fit_isoflop(runs["N"], runs["C"], runs["loss"])
    assert fit.n_exponent == pytest.approx(0.28 / 0.62, abs=0.03)
    assert fit.n_exponent + fit.d_exponent == pytest.approx(1.0, abs=1e-9)
    assert GRID_BIAS_WARNING in fit.warnings
    assert (fit.budgets["minimum_position"] == "inside").all()
    assert fit.predict(1e20) == pytest.approx(fit.budgets["N_opt"].iloc[2], rel=0.1)


def test_isoflop_flags_budgets_whose_minimum_is_off_the_grid():
    runs = _isoflop_runs(centre_offsets=(0.0, 0.0, 3.0, 0.0))  # one grid lies far right of its optimum
    fit = fit_isoflop(runs["N"], runs["C"], runs["loss"])
    assert (fit.budgets["minimum_position"] != "inside").sum() == 1
    assert any("is extrapolated" in warning for warning in fit.warnings)


@pytest.mark.parametrize("budgets", [(1e20,), (1e19, 1e20)])
def test_isoflop_needs_three_budgets_with_a_minimum(budgets):
    """N_opt ~ C^a through two budgets' minima would be exact: no degree of freedom, no uncertainty."""
    runs = _isoflop_runs()
    few = runs[runs["C"].isin(budgets)]
    with pytest.raises(FitError, match="at least 3 budgets"):
        fit_isoflop(few["N"], few["C"], few["loss"])


def _curves(sizes=(1e7, 3e7, 1e8, 3e8, 1e9)):
    """Training curves with L = 1 + (N^-0.3 + D^-0.3)-like shape, compute = 6 N D."""
    rows = []
    for N in sizes:
        for step, tokens in enumerate(np.geomspace(1e8, 1e11, 12)):
            rows.append(
                {
                    "trial_key": f"n{N:.0e}",
                    "metric": "test_loss_last",
                    "step": step,
                    "value": (N / 1e12) ** -0.2 + (tokens / 1e14) ** -0.2,
                    "flops": 6 * N * tokens,
                    "params_total": N,
                }
            )
    return pd.DataFrame(rows)


def test_frontier_is_the_lower_envelope():
    curves = _curves()
    frontier = compute_frontier(curves)
    assert np.all(np.diff(frontier["flops"]) > 0)
    assert np.all(np.diff(frontier["value"]) < 0)
    # No curve point beats the frontier: lower value at no more compute.
    for row in curves.itertuples():
        dominated = frontier[(frontier["flops"] <= row.flops)]
        assert dominated.empty or dominated["value"].min() <= row.value
    assert frontier["trial_key"].nunique() >= 3


def test_frontier_fit_and_its_extrapolation_check():
    curves = _curves()
    fit = fit_frontier(curves)
    assert fit.law.alpha < 0 and fit.law.r < -0.95
    assert fit.n_opt_law is not None and fit.n_opt_law.alpha > 0  # bigger models on the frontier at more compute
    assert fit.law.x_unit == "PFLOP"
    with pytest.raises(DataError, match="metrics present"):
        fit_frontier(curves, metric="test_error_avg")


def test_extrapolation_check_predicts_the_held_out_largest_model():
    sizes = np.geomspace(1e7, 1e9, 6)
    loss = (2.0 * sizes / 1e9) ** -0.23
    result = extrapolation_check(fit_power_law, sizes, loss, x_unit_scale=1e9)
    assert result.held_out_x.tolist() == [1e9]
    assert abs(result.relative_error[0]) < 1e-9
    assert result.fit.n_points == 5
    curved = loss + 0.5  # an offset the VAR form cannot follow: extrapolation error shows it
    assert extrapolation_check(fit_power_law, sizes, curved).mean_absolute_relative_error > 1e-3


def test_extrapolation_check_with_two_inputs(reference_frame):
    result = extrapolation_check(
        fit_chinchilla,
        reference_frame["Model Size"],
        reference_frame["tokens"],
        reference_frame["loss"],
        grid=REDUCED_GRID,
    )
    assert len(result.actual) >= 1
    assert result.mean_absolute_relative_error < 0.2
    with pytest.raises(FitError, match="holdout_column"):
        extrapolation_check(fit_power_law, [1, 2, 3], [3, 2, 1], holdout_column=1)
