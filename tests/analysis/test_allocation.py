"""Compute-optimal allocation reproduces Hoffmann's and the replication's numbers."""

import numpy as np
import pytest

from analysis import DataError, FitError, compute_for_loss, compute_optimal_allocation, fit_power_law
from analysis.chinchilla import ChinchillaFit


def _fit(A, B, E, alpha, beta):
    return ChinchillaFit(
        A=A,
        B=B,
        E=E,
        alpha=alpha,
        beta=beta,
        objective=0.0,
        n_points=0,
        converged=True,
        status="given",
        n_starts=0,
        n_starts_converged=0,
        n_starts_at_best=0,
        best_start=(),
    )


def test_hoffmann_rounded_parameters_give_92_tokens_per_parameter():
    allocation = compute_optimal_allocation(_fit(406.4, 410.7, 1.69, 0.34, 0.28), 5.76e23)
    assert float(allocation.tokens_per_parameter) == pytest.approx(92.6, abs=0.05)
    assert float(6 * allocation.N_opt * allocation.D_opt) == pytest.approx(5.76e23, rel=1e-12)


def test_replication_parameters_give_70_billion_parameters():
    allocation = compute_optimal_allocation(_fit(482.01, 2085.43, 1.82, 0.3478, 0.3658), 5.76e23)
    assert float(allocation.N_opt) == pytest.approx(7.2e10, rel=0.03)
    assert float(allocation.tokens_per_parameter) == pytest.approx(18.4, rel=0.03)


def test_the_allocation_minimises_loss_at_fixed_compute():
    fit = _fit(406.4, 410.7, 1.69, 0.34, 0.28)
    compute = 1e21
    optimum = compute_optimal_allocation(fit, compute)
    sizes = float(optimum.N_opt) * np.array([0.5, 0.8, 1.25, 2.0])
    assert np.all(fit.predict(sizes, compute / (6 * sizes)) > optimum.loss)


def test_compute_for_loss_inverts_the_optimal_loss():
    fit = _fit(406.4, 410.7, 1.69, 0.34, 0.28)
    computes = np.array([1e20, 1e22, 1e24])
    losses = compute_optimal_allocation(fit, computes).loss
    np.testing.assert_allclose(compute_for_loss(fit, losses), computes, rtol=1e-9)
    with pytest.raises(DataError, match="irreducible"):
        compute_for_loss(fit, 1.6)


def test_compute_for_loss_from_a_law_fitted_against_compute():
    compute = np.geomspace(1e15, 1e19, 8)
    law = fit_power_law(compute, (2.2e-5 * compute / 1e15) ** -0.13, x_unit_scale=1e15)
    assert compute_for_loss(law, law.predict(3e17)) == pytest.approx(3e17, rel=1e-9)


def test_bad_allocation_inputs():
    with pytest.raises(DataError, match="compute must be positive"):
        compute_optimal_allocation(_fit(406.4, 410.7, 1.69, 0.34, 0.28), [-1.0])
    with pytest.raises(FitError, match="alpha, beta > 0"):
        compute_optimal_allocation(_fit(406.4, 410.7, 1.69, -0.1, 0.28), 1e21)
