"""Compute-optimal allocation under C = 6 N D (Hoffmann et al. 2022) and "compute needed for a loss".

With L(N, D) = E + A/N^alpha + B/D^beta, minimising L at fixed C = 6ND gives
    G = (alpha A / (beta B))^(1 / (alpha + beta))
    N_opt = G (C/6)^(beta / (alpha + beta)),   D_opt = (C/6)^(alpha / (alpha + beta)) / G.
Substituting, L_opt(C) = E + (A G^-alpha + B G^beta) (C/6)^-gamma with gamma = alpha beta / (alpha + beta),
which inverts in closed form to the compute that reaches a target loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from analysis.chinchilla import ChinchillaFit
from analysis.errors import DataError, FitError
from analysis.power_law import PowerLawFit

FLOPS_PER_PARAMETER_TOKEN = 6.0  # forward + backward, the C = 6ND convention


@dataclass(frozen=True)
class Allocation:
    compute: np.ndarray
    N_opt: np.ndarray
    D_opt: np.ndarray
    tokens_per_parameter: np.ndarray
    loss: np.ndarray  # the fitted loss at (N_opt, D_opt)

    def to_dict(self) -> dict:
        return {key: np.asarray(value).tolist() for key, value in asdict(self).items()}


def _checked_compute(compute) -> np.ndarray:
    compute = np.asarray(compute, dtype=float)
    if not np.all(np.isfinite(compute)) or np.any(compute <= 0):
        raise DataError(f"compute must be positive and finite, got {compute!r}")
    return compute


def _require_exponents(fit) -> None:
    if not (fit.alpha > 0 and fit.beta > 0 and fit.A > 0 and fit.B > 0):
        raise FitError(
            f"compute-optimal allocation needs A, B, alpha, beta > 0; got A={fit.A}, B={fit.B}, "
            f"alpha={fit.alpha}, beta={fit.beta}"
        )


def compute_optimal_allocation(fit: ChinchillaFit, compute) -> Allocation:
    """N_opt(C), D_opt(C) for a fitted L(N, D) (any object with A, B, E, alpha, beta and predict)."""
    _require_exponents(fit)
    compute = _checked_compute(compute)
    exponent_sum = fit.alpha + fit.beta
    G = (fit.alpha * fit.A / (fit.beta * fit.B)) ** (1.0 / exponent_sum)
    parameter_tokens = compute / FLOPS_PER_PARAMETER_TOKEN
    N_opt = G * parameter_tokens ** (fit.beta / exponent_sum)
    D_opt = parameter_tokens ** (fit.alpha / exponent_sum) / G
    return Allocation(
        compute=compute, N_opt=N_opt, D_opt=D_opt, tokens_per_parameter=D_opt / N_opt, loss=fit.predict(N_opt, D_opt)
    )


def compute_for_loss(fit: ChinchillaFit | PowerLawFit, loss) -> np.ndarray:
    """The training compute needed to reach `loss`.

    For a ChinchillaFit: at the compute-optimal allocation (closed form above). For a PowerLawFit
    fitted against compute (e.g. on the C_min frontier): the inverse of the law, in the x units the
    fit was given (its x_unit_scale is undone). Raises when the loss is at or below the fit's
    irreducible term, which no amount of compute reaches."""
    target = np.asarray(loss, dtype=float)
    if isinstance(fit, PowerLawFit):
        return fit.inverse(target)
    _require_exponents(fit)
    reducible = target - fit.E
    if np.any(reducible <= 0):
        raise DataError(f"loss {loss!r} is not above the irreducible loss E={fit.E:.6g}; no compute reaches it")
    exponent_sum = fit.alpha + fit.beta
    G = (fit.alpha * fit.A / (fit.beta * fit.B)) ** (1.0 / exponent_sum)
    gamma = fit.alpha * fit.beta / exponent_sum
    coefficient = fit.A * G ** (-fit.alpha) + fit.B * G**fit.beta
    return FLOPS_PER_PARAMETER_TOKEN * (coefficient / reducible) ** (1.0 / gamma)
