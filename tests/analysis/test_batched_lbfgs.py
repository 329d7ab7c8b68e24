"""The batched L-BFGS finds what scipy's L-BFGS-B finds, problem by problem."""

import numpy as np
from scipy import optimize

from analysis.lbfgs import batched_lbfgs


def _rosenbrock(x_SP, rows=None):
    x, y = x_SP[:, 0], x_SP[:, 1]
    f = (1 - x) ** 2 + 100 * (y - x**2) ** 2
    gradient = np.column_stack([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)])
    return f, gradient


def test_matches_scipy_on_rosenbrock_from_many_starts():
    starts = np.random.default_rng(0).uniform(-2, 2, size=(50, 2))
    result = batched_lbfgs(_rosenbrock, starts)
    assert result.converged_S.all()
    np.testing.assert_allclose(result.x_SP, 1.0, atol=1e-4)
    reference = optimize.minimize(
        lambda x: tuple(v[0] for v in _rosenbrock(x[None])), starts[0], jac=True, method="L-BFGS-B"
    )
    np.testing.assert_allclose(result.x_SP[0], reference.x, atol=1e-4)


def test_per_problem_data_is_selected_by_row():
    # Problem i minimises (x - target_i)^2: the objective must see which rows it evaluates.
    targets = np.arange(5.0)

    def shifted_quadratic(x_SP, rows):
        residual = x_SP[:, 0] - targets[rows]
        return residual**2, 2 * residual[:, None]

    result = batched_lbfgs(shifted_quadratic, np.zeros((5, 1)))
    np.testing.assert_allclose(result.x_SP[:, 0], targets, atol=1e-8)
    assert result.stop_reason_S[0] == "gtol"  # already at its minimum: no iteration needed
    assert result.iterations_S[0] == 0


def test_each_problem_ends_where_it_ends_alone():
    """Problems that stop at different iterations (and one that never starts, and ones cut off by
    max_iterations) leave the batch without disturbing the others: every row's result, iteration
    count and stop reason are those of that problem minimised on its own."""
    starts = np.random.default_rng(1).uniform(-2, 2, size=(12, 2))
    starts[3] = np.nan  # not finite at the start: stopped before the first step
    starts[5] = (1.0, 1.0)  # already at the minimum
    for max_iterations in (2000, 15):
        together = batched_lbfgs(_rosenbrock, starts, max_iterations=max_iterations)
        if max_iterations == 2000:
            assert len(set(together.iterations_S.tolist())) > 3  # rows really stop at different times
        for row, start in enumerate(starts):
            alone = batched_lbfgs(_rosenbrock, start[None], max_iterations=max_iterations)
            np.testing.assert_array_equal(together.x_SP[row], alone.x_SP[0])
            assert together.f_S[row] == alone.f_S[0] or np.isnan(alone.f_S[0])
            assert together.iterations_S[row] == alone.iterations_S[0]
            assert together.stop_reason_S[row] == alone.stop_reason_S[0]
