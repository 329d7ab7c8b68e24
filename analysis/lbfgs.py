"""A batched L-BFGS: many independent minimisations advanced together as numpy arrays.

Why: the Chinchilla fit runs 4,500 starts (and a bootstrap runs thousands of resamples). One scipy
call per start pays Python overhead per iteration per start (minutes); here each iteration
evaluates the objective of every still-active start in one vectorised call, so the cost is a few
hundred large numpy operations in total.

Shapes: S starts (problems), P parameters. `objective(x_SP, rows_S) -> (f_S, g_SP)` where `rows`
are the indices of the problems being evaluated (so per-problem data, e.g. bootstrap weights, can
be selected). Line search: backtracking Armijo (c1 = 1e-4) with step halving; a pair (s, y) enters
the history only when s.y > 1e-10 s.s, which keeps the inverse-Hessian estimate positive definite
and bounded; a failed line search restarts from steepest descent before giving up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

ARMIJO_C1 = 1e-4
MAX_BACKTRACKS = 40
CURVATURE_FLOOR = 1e-10  # minimum s.y / s.s for a pair to enter the history


@dataclass(frozen=True)
class BatchedMinimum:
    x_SP: np.ndarray
    f_S: np.ndarray
    gradient_norm_S: np.ndarray
    iterations_S: np.ndarray
    converged_S: np.ndarray  # gradient or relative-decrease criterion met (not max_iterations)
    stop_reason_S: np.ndarray  # "gtol" | "ftol" | "line-search" | "max-iterations"


def _two_loop_direction(g_AP, s_AMP, y_AMP, rho_AM):
    """-H g by the standard two-loop recursion; index M-1 is the newest pair, rho=0 marks empty slots."""
    q_AP = g_AP.copy()
    history = s_AMP.shape[1]
    coefficients = np.zeros(rho_AM.shape)
    for slot in range(history - 1, -1, -1):
        coefficients[:, slot] = rho_AM[:, slot] * np.einsum("ap,ap->a", s_AMP[:, slot], q_AP)
        q_AP -= coefficients[:, slot, None] * y_AMP[:, slot]
    # Initial Hessian scale gamma = s.y / y.y of the newest pair (1 where there is no history).
    newest_s, newest_y = s_AMP[:, -1], y_AMP[:, -1]
    yy = np.einsum("ap,ap->a", newest_y, newest_y)
    has_history = rho_AM[:, -1] > 0
    gamma = np.where(has_history, np.einsum("ap,ap->a", newest_s, newest_y) / np.where(yy > 0, yy, 1.0), 1.0)
    r_AP = gamma[:, None] * q_AP
    for slot in range(history):
        b = rho_AM[:, slot] * np.einsum("ap,ap->a", y_AMP[:, slot], r_AP)
        r_AP += s_AMP[:, slot] * (coefficients[:, slot] - b)[:, None]
    return -r_AP


def batched_lbfgs(
    objective: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    x0_SP: np.ndarray,
    max_iterations: int = 2000,
    history: int = 10,
    gtol: float = 1e-9,
    ftol: float = 1e-12,
) -> BatchedMinimum:
    """Minimises S independent problems from the starts x0_SP. Converged problems drop out of the
    active set, so late iterations cost only what is still moving.

    gtol: stop a problem when max |gradient| <= gtol.
    ftol: stop when (f_old - f_new) / max(|f_old|, |f_new|, 1) <= ftol (scipy's convention)."""
    x_SP = np.array(x0_SP, dtype=float, copy=True)
    n_problems, n_parameters = x_SP.shape
    f_S, g_SP = objective(x_SP, np.arange(n_problems))
    f_S, g_SP = np.array(f_S, dtype=float), np.array(g_SP, dtype=float)
    iterations_S = np.zeros(n_problems, dtype=int)
    stop_reason_S = np.full(n_problems, "max-iterations", dtype=object)
    active = np.abs(g_SP).max(axis=1) > gtol
    stop_reason_S[~active] = "gtol"
    # Problems whose objective is not finite at the start cannot be moved by a line search.
    bad_start = ~np.isfinite(f_S) | ~np.isfinite(g_SP).all(axis=1)
    active &= ~bad_start
    stop_reason_S[bad_start] = "line-search"

    # The state of the active problems lives in compact arrays (A rows, in problem order), shrunk
    # when problems stop: gathering the histories of the active rows out of full-size arrays at
    # every iteration was a third of the time. Every row's arithmetic is the same either way.
    rows = np.flatnonzero(active)
    x_AP, f_A, g_AP = x_SP[rows], f_S[rows], g_SP[rows]
    s_AMP = np.zeros((len(rows), history, n_parameters))
    y_AMP = np.zeros((len(rows), history, n_parameters))
    rho_AM = np.zeros((len(rows), history))
    iterations_A = np.zeros(len(rows), dtype=int)

    for _ in range(max_iterations):
        if rows.size == 0:
            break
        direction_AP = _two_loop_direction(g_AP, s_AMP, y_AMP, rho_AM)
        slope_A = np.einsum("ap,ap->a", g_AP, direction_AP)
        # Not a descent direction (numerical trouble): restart that problem from steepest descent.
        reset = ~(slope_A < 0)
        if reset.any():
            direction_AP[reset] = -g_AP[reset]
            slope_A[reset] = -np.einsum("ap,ap->a", g_AP[reset], g_AP[reset])
            rho_AM[reset] = 0.0
        # Without history the direction is -g: take a first step of length at most 1.
        no_history = rho_AM.max(axis=1) == 0
        step_A = np.where(no_history, 1.0 / np.maximum(1.0, np.linalg.norm(g_AP, axis=1)), 1.0)

        new_x_AP = x_AP + step_A[:, None] * direction_AP
        new_f_A, new_g_AP = objective(new_x_AP, rows)
        accepted = np.isfinite(new_f_A) & (new_f_A <= f_A + ARMIJO_C1 * step_A * slope_A)
        for _backtrack in range(MAX_BACKTRACKS):
            pending = np.nonzero(~accepted)[0]
            if pending.size == 0:
                break
            step_A[pending] *= 0.5
            new_x_AP[pending] = x_AP[pending] + step_A[pending, None] * direction_AP[pending]
            trial_f, trial_g = objective(new_x_AP[pending], rows[pending])
            new_f_A[pending], new_g_AP[pending] = trial_f, trial_g
            accepted[pending] = np.isfinite(trial_f) & (
                trial_f <= f_A[pending] + ARMIJO_C1 * step_A[pending] * slope_A[pending]
            )

        failed = ~accepted
        moved = np.nonzero(accepted)[0]
        old_f = f_A[moved]
        s_AP = new_x_AP[moved] - x_AP[moved]
        y_AP = new_g_AP[moved] - g_AP[moved]
        x_AP[moved], f_A[moved], g_AP[moved] = new_x_AP[moved], new_f_A[moved], new_g_AP[moved]
        iterations_A[moved] += 1

        sy = np.einsum("ap,ap->a", s_AP, y_AP)
        # Skip pairs with (nearly) no curvature, e.g. steps inside the linear part of a Huber loss:
        # 1/sy would blow the inverse-Hessian estimate up into absurdly long steps.
        curvature_ok = sy > CURVATURE_FLOOR * np.einsum("ap,ap->a", s_AP, s_AP)
        updated = moved[curvature_ok]
        # Shift the history left and put the newest pair in the last slot.
        s_AMP[updated, :-1], y_AMP[updated, :-1], rho_AM[updated, :-1] = (
            s_AMP[updated, 1:],
            y_AMP[updated, 1:],
            rho_AM[updated, 1:],
        )
        s_AMP[updated, -1], y_AMP[updated, -1] = s_AP[curvature_ok], y_AP[curvature_ok]
        rho_AM[updated, -1] = 1.0 / sy[curvature_ok]

        relative_decrease = (old_f - f_A[moved]) / np.maximum(np.maximum(np.abs(old_f), np.abs(f_A[moved])), 1.0)
        gradient_small = np.abs(g_AP[moved]).max(axis=1) <= gtol
        decrease_small = relative_decrease <= ftol
        stop_reason_S[rows[moved[decrease_small]]] = "ftol"
        stop_reason_S[rows[moved[gradient_small]]] = "gtol"
        # A failed line search along a quasi-Newton direction gets one more chance along -g with a
        # fresh history; failing along -g itself means no further progress is possible.
        rho_AM[failed & ~no_history] = 0.0
        stopped = failed & no_history
        stop_reason_S[rows[stopped]] = "line-search"
        finished = stopped
        finished[moved[gradient_small | decrease_small]] = True
        if finished.any():
            done = rows[finished]
            x_SP[done], f_S[done], g_SP[done], iterations_S[done] = (
                x_AP[finished],
                f_A[finished],
                g_AP[finished],
                iterations_A[finished],
            )
            keep = ~finished
            rows, x_AP, f_A, g_AP = rows[keep], x_AP[keep], f_A[keep], g_AP[keep]
            s_AMP, y_AMP, rho_AM, iterations_A = s_AMP[keep], y_AMP[keep], rho_AM[keep], iterations_A[keep]
    # Problems still active after max_iterations keep their last point.
    x_SP[rows], f_S[rows], g_SP[rows], iterations_S[rows] = x_AP, f_A, g_AP, iterations_A

    return BatchedMinimum(
        x_SP=x_SP,
        f_S=f_S,
        gradient_norm_S=np.abs(g_SP).max(axis=1),
        iterations_S=iterations_S,
        converged_S=np.isin(stop_reason_S, ("gtol", "ftol")),
        stop_reason_S=stop_reason_S.astype(str),
    )
