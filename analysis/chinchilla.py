"""The Chinchilla parametric fit (Hoffmann et al. 2022, approach 3), done the way the replication
(Besiroglu et al. 2024) showed it must be done:

    L(N, D) = E + A / N^alpha + B / D^beta,   with a = log A, b = log B, e = log E and
    log L_hat = logsumexp(a - alpha log N, b - beta log D, e)

minimising the Huber loss (delta 1e-3) of log L_hat - log L SUMMED over points (with the mean the
objective is so flat that L-BFGS stops at its first iterations and returns the start: the original
paper's mistake), by L-BFGS with analytic gradients from a grid of starts, keeping the best. All
starts run together in a batched L-BFGS (analysis.lbfgs); the best one is then polished with
scipy's L-BFGS-B at tight tolerances.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import optimize

from analysis.errors import FitError
from analysis.inputs import clean_inputs
from analysis.lbfgs import batched_lbfgs

PARAMETER_NAMES = ("a", "b", "e", "alpha", "beta")  # column order of every x_SP array here


@dataclass(frozen=True)
class StartGrid:
    """The grid of L-BFGS starts; the default is the replication's 4,500-point grid."""

    alpha_values: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    beta_values: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    e_values: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)
    a_values: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
    b_values: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)

    def __post_init__(self):
        for name in ("alpha_values", "beta_values", "e_values", "a_values", "b_values"):
            values = getattr(self, name)
            if len(values) == 0 or not all(np.isfinite(v) for v in values):
                raise FitError(f"StartGrid.{name} must be a non-empty tuple of finite numbers, got {values!r}")

    def values(self) -> dict[str, tuple[float, ...]]:
        return {
            "a": self.a_values,
            "b": self.b_values,
            "e": self.e_values,
            "alpha": self.alpha_values,
            "beta": self.beta_values,
        }

    def points(self) -> np.ndarray:
        """All starts, shape (S, 5) in PARAMETER_NAMES order."""
        values = self.values()
        return np.array(list(itertools.product(*(values[name] for name in PARAMETER_NAMES))), dtype=float)


CHUNK_ELEMENTS = 32_768  # rows x points per block: ~256 KB per temporary, so blocks stay in cache


def chinchilla_objective(x_SP, log_N, log_D, log_loss, huber_delta, weights_SN=None):
    """Summed Huber loss of log-space residuals and its analytic gradient, for S parameter rows.

    weights_SN: optional per-row point weights (bootstrap resample counts); None means all ones.
    Rows are processed in cache-sized blocks: on 4,500 x 240 this is ~10x faster than one pass over
    full-size temporaries, which is memory-bound."""
    rows_per_chunk = max(1, CHUNK_ELEMENTS // max(len(log_loss), 1))
    if len(x_SP) <= rows_per_chunk:
        return _objective_block(x_SP, log_N, log_D, log_loss, huber_delta, weights_SN)
    f_S = np.empty(len(x_SP))
    g_SP = np.empty((len(x_SP), 5))
    for start in range(0, len(x_SP), rows_per_chunk):
        block = slice(start, start + rows_per_chunk)
        weights = None if weights_SN is None else weights_SN[block]
        f_S[block], g_SP[block] = _objective_block(x_SP[block], log_N, log_D, log_loss, huber_delta, weights)
    return f_S, g_SP


def _objective_block(x_SP, log_N, log_D, log_loss, huber_delta, weights_SN):
    # In-place operations on a few temporaries: this function is the whole cost of the grid.
    a, b, e, alpha, beta = (x_SP[:, column, None] for column in range(5))
    w1 = a - alpha * log_N  # u1, the A/N^alpha term in log space
    w2 = b - beta * log_D  # u2, the B/D^beta term
    top = np.maximum(w1, w2)
    np.maximum(top, e, out=top)  # subtracted before exp so large a, b cannot overflow
    w1 -= top
    np.exp(w1, out=w1)
    w2 -= top
    np.exp(w2, out=w2)
    w3 = np.exp(e - top)
    total = w1 + w2
    total += w3
    residual = np.log(total)
    residual += top
    residual -= log_loss
    # Huber: with c = clip(r, -delta, delta), huber(r) = c (r - c/2) and huber'(r) = c.
    clipped = np.minimum(np.maximum(residual, -huber_delta), huber_delta)  # np.clip's values, minus its wrapper
    residual -= 0.5 * clipped
    residual *= clipped  # now the per-point Huber loss
    clipped /= total  # d huber / d residual over the logsumexp denominator: d objective / d u_k = this * w_k
    if weights_SN is not None:
        residual *= weights_SN
        clipped *= weights_SN
    f_S = residual.sum(axis=1)
    w1 *= clipped
    w2 *= clipped
    w3 *= clipped
    g_SP = np.empty((len(x_SP), 5))
    g_SP[:, 0], g_SP[:, 3] = w1.sum(axis=1), -(w1 @ log_N)
    g_SP[:, 1], g_SP[:, 4] = w2.sum(axis=1), -(w2 @ log_D)
    g_SP[:, 2] = w3.sum(axis=1)
    return f_S, g_SP


@dataclass(frozen=True)
class ChinchillaFit:
    """A fitted L(N, D) = E + A/N^alpha + B/D^beta with its convergence report."""

    A: float
    B: float
    E: float
    alpha: float
    beta: float
    objective: float  # summed Huber loss at the optimum
    n_points: int
    converged: bool
    status: str
    n_starts: int
    n_starts_converged: int
    n_starts_at_best: int  # starts whose result is within 1e-9 (relative) of the best objective
    best_start: tuple[float, ...]  # (a, b, e, alpha, beta) of the start that reached the best basin
    warnings: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)

    def predict(self, N, D) -> np.ndarray:
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return self.E + self.A / N**self.alpha + self.B / D**self.beta

    @property
    def n_exponent(self) -> float:
        """a in N_opt ~ C^a: beta / (alpha + beta) (Hoffmann's notation)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def d_exponent(self) -> float:
        """b in D_opt ~ C^b: alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    def log_parameters(self) -> np.ndarray:
        """(a, b, e, alpha, beta): the optimiser's coordinates, e.g. to start a bootstrap from."""
        return np.array([np.log(self.A), np.log(self.B), np.log(self.E), self.alpha, self.beta])

    def parameters(self) -> dict[str, float]:
        return {
            "A": self.A,
            "B": self.B,
            "E": self.E,
            "alpha": self.alpha,
            "beta": self.beta,
            "n_exponent": self.n_exponent,
            "d_exponent": self.d_exponent,
        }

    def to_dict(self) -> dict:
        return asdict(self)


def prepare_chinchilla_inputs(N, D, loss):
    N, D, loss = clean_inputs(
        ("N", "D", "loss"), N, D, loss, positive=True, n_parameters=5, fit_name="Chinchilla L(N, D) fit"
    )
    return np.log(N), np.log(D), np.log(loss)


def fit_chinchilla(
    N,
    D,
    loss,
    grid: StartGrid | None = None,
    huber_delta: float = 1e-3,
    max_iterations: int = 2000,
    polish: bool = True,
) -> ChinchillaFit:
    """Fits E + A/N^alpha + B/D^beta to final losses of runs with N parameters trained on D tokens.

    grid: the starts (default: the replication's 4,500). huber_delta: Huber threshold on log loss.
    polish: refine the best start with scipy L-BFGS-B at tight tolerances (recommended)."""
    if not (np.isfinite(huber_delta) and huber_delta > 0):
        raise FitError(f"huber_delta must be a positive finite number, got {huber_delta!r}")
    grid = grid or StartGrid()
    log_N, log_D, log_loss = prepare_chinchilla_inputs(N, D, loss)
    starts_SP = grid.points()

    def objective(x_SP, rows):
        return chinchilla_objective(x_SP, log_N, log_D, log_loss, huber_delta)

    batch = batched_lbfgs(objective, starts_SP, max_iterations=max_iterations)
    finite = np.isfinite(batch.f_S)
    if not finite.any():
        raise FitError("the objective is not finite at any start; check N, D and loss scales")
    best_row = int(np.nanargmin(np.where(finite, batch.f_S, np.inf)))
    best_x, best_f = batch.x_SP[best_row], float(batch.f_S[best_row])
    status = f"batched L-BFGS: {batch.stop_reason_S[best_row]} after {batch.iterations_S[best_row]} iterations"
    converged = bool(batch.converged_S[best_row])
    if polish:
        polished = optimize.minimize(
            lambda x: tuple(value[0] for value in objective(x[None, :], None)),
            best_x,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 10_000, "ftol": 1e-15, "gtol": 1e-12},
        )
        if polished.fun < best_f:
            best_x, best_f = polished.x, float(polished.fun)
            status += f"; scipy L-BFGS-B polish lowered it: {polished.message}"
        else:
            status += "; scipy L-BFGS-B polish found nothing lower (already at the minimum)"
        converged = converged or bool(polished.success)

    at_best = finite & (batch.f_S <= best_f * (1 + 1e-9) + 1e-15)
    warnings = _grid_warnings(grid, starts_SP, batch, at_best, best_row, best_x)
    a, b, e, alpha, beta = (float(value) for value in best_x)
    return ChinchillaFit(
        A=float(np.exp(a)),
        B=float(np.exp(b)),
        E=float(np.exp(e)),
        alpha=alpha,
        beta=beta,
        objective=best_f,
        n_points=len(log_loss),
        converged=converged,
        status=status,
        n_starts=len(starts_SP),
        n_starts_converged=int(batch.converged_S.sum()),
        n_starts_at_best=int(at_best.sum()),
        best_start=tuple(float(v) for v in starts_SP[best_row]),
        warnings=tuple(warnings),
        options={
            "huber_delta": huber_delta,
            "reduction": "sum",
            "max_iterations": max_iterations,
            "polish": polish,
            "grid": {name: list(v) for name, v in grid.values().items()},
        },
    )


def _grid_warnings(grid, starts_SP, batch, at_best, best_row, best_x) -> list[str]:
    """Why a user should distrust the result:
    - the fitted optimum lies outside the range the grid spans (the grid may miss the basin);
    - the best basin is reached only from starts on the grid's edge for some parameter (many starts
      usually reach the optimum, so "the best start" is read as every start that reached the best
      objective; if all of them sit on an edge, a wider grid could hold a better basin);
    - the optimiser stopped at its start (the averaged-objective failure of the original paper)."""
    warnings = []
    values = grid.values()
    for column, name in enumerate(PARAMETER_NAMES):
        low, high = min(values[name]), max(values[name])
        if len(values[name]) > 1 and not (low <= best_x[column] <= high):
            warnings.append(
                f"fitted {name}={best_x[column]:.4g} lies outside the start grid [{low}, {high}]; "
                "widen the grid to check it covers the optimum"
            )
        edge_only = at_best.any() and np.all((starts_SP[at_best, column] == low) | (starts_SP[at_best, column] == high))
        if len(values[name]) > 2 and edge_only:
            warnings.append(
                f"every start reaching the best objective has {name} on the grid edge "
                f"({low} or {high}); the grid may not cover the best basin"
            )
    if batch.iterations_S[best_row] == 0 or np.allclose(best_x, starts_SP[best_row], rtol=0, atol=1e-10):
        warnings.append("the optimiser stopped at its start point: the result is the start, not a fit")
    return warnings
