"""Approach 2 of Hoffmann et al. (2022): IsoFLOP profiles.

For each compute budget, fit a parabola to loss against log N and take its minimum N*(C); then fit
N* = (k C)^a (and D* = C / (6 N*)) as power laws across budgets. The minimum of a parabola fitted
to a narrow or off-centre grid of sizes is biased (Besiroglu et al. 2024 discuss this): the result
always carries that warning, plus specific ones for budgets whose minimum lies outside, or in the
outermost interval of, the sizes actually trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.errors import FitError
from analysis.inputs import clean_inputs
from analysis.power_law import PowerLawFit, fit_power_law

GRID_BIAS_WARNING = (
    "IsoFLOP minima come from parabolas fitted to a finite grid of model sizes; they are biased when "
    "the grid is narrow or not centred on the optimum. Check `budgets.minimum_position` and prefer "
    "the parametric fit (fit_chinchilla) or the frontier when they disagree."
)


@dataclass(frozen=True)
class IsoFlopFit:
    budgets: pd.DataFrame  # one row per budget: compute, n_points, N_opt, D_opt, loss_at_opt, minimum_position
    n_opt_law: PowerLawFit  # N_opt = (k C)^a, fitted with the VAR form (alpha = a > 0 here)
    d_opt_law: PowerLawFit
    n_points: int
    warnings: tuple[str, ...]
    options: dict = field(default_factory=dict)

    @property
    def n_exponent(self) -> float:
        return self.n_opt_law.alpha

    @property
    def d_exponent(self) -> float:
        return self.d_opt_law.alpha

    def predict(self, compute) -> np.ndarray:
        """N_opt at the given compute."""
        return self.n_opt_law.predict(compute)

    def predict_tokens(self, compute) -> np.ndarray:
        return self.d_opt_law.predict(compute)

    def parameters(self) -> dict[str, float]:
        return {
            "n_exponent": self.n_exponent,
            "d_exponent": self.d_exponent,
            "n_coefficient": self.n_opt_law.beta,
            "r": self.n_opt_law.r,
        }


def _budget_labels(compute: np.ndarray, relative_tolerance: float) -> np.ndarray:
    """Groups computes that agree within relative_tolerance (runs logged with a nominal budget
    rarely hit it exactly)."""
    order = np.argsort(compute)
    labels = np.empty(len(compute), dtype=int)
    label, anchor = 0, compute[order[0]]
    for row in order:
        if compute[row] > anchor * (1 + relative_tolerance):
            label, anchor = label + 1, compute[row]
        labels[row] = label
    return labels


def fit_isoflop(N, C, loss, budget=None, relative_tolerance: float = 0.05) -> IsoFlopFit:
    """N, C, loss: one row per run (parameters, training FLOPs, final loss).
    budget: optional budget label per run (e.g. the study's nominal FLOP budget); when None, runs
    whose computes agree within relative_tolerance form one budget."""
    N, C, loss = clean_inputs(
        ("N", "C", "loss"), N, C, loss, positive=True, n_parameters=9, fit_name="IsoFLOP fit (3 budgets x 3 sizes)"
    )
    labels = _budget_labels(C, relative_tolerance) if budget is None else pd.factorize(np.asarray(budget))[0]
    rows, skipped = [], []
    for label in np.unique(labels):
        members = labels == label
        log_N = np.log(N[members])
        compute = float(np.median(C[members]))
        if len(np.unique(log_N)) < 3:
            skipped.append(f"budget {compute:.3g} FLOPs: {len(np.unique(log_N))} distinct sizes (need 3)")
            continue
        curvature, linear, constant = np.polyfit(log_N, np.log(loss[members]), 2)
        if curvature <= 0:
            skipped.append(f"budget {compute:.3g} FLOPs: loss vs log N is not convex (no minimum)")
            continue
        log_N_opt = -linear / (2 * curvature)
        sorted_log_N = np.sort(np.unique(log_N))
        if not sorted_log_N[0] <= log_N_opt <= sorted_log_N[-1]:
            position = "outside the grid"
        elif log_N_opt < sorted_log_N[1] or log_N_opt > sorted_log_N[-2]:
            position = "outermost interval"
        else:
            position = "inside"
        N_opt = float(np.exp(log_N_opt))
        rows.append(
            {
                "compute": compute,
                "n_points": int(members.sum()),
                "N_opt": N_opt,
                "D_opt": compute / (6 * N_opt),
                "loss_at_opt": float(np.exp(constant + linear * log_N_opt + curvature * log_N_opt**2)),
                "N_min": float(np.exp(sorted_log_N[0])),
                "N_max": float(np.exp(sorted_log_N[-1])),
                "minimum_position": position,
            }
        )
    budgets = pd.DataFrame.from_records(rows)
    # N_opt ~ C^a through 2 budgets' minima would be exact (no degree of freedom): 3 at least.
    if len(budgets) < 3:
        raise FitError(
            f"IsoFLOP needs at least 3 budgets with a parabola minimum; got {len(budgets)}. Skipped: {skipped}"
        )
    warnings = [GRID_BIAS_WARNING] + [f"skipped {reason}" for reason in skipped]
    for row in budgets.itertuples():
        if row.minimum_position != "inside":
            warnings.append(
                f"budget {row.compute:.3g} FLOPs: minimum N={row.N_opt:.3g} lies "
                f"{row.minimum_position} [{row.N_min:.3g}, {row.N_max:.3g}]; its N_opt is extrapolated"
            )
    return IsoFlopFit(
        budgets=budgets,
        n_opt_law=fit_power_law(budgets["compute"], budgets["N_opt"], form="var"),
        d_opt_law=fit_power_law(budgets["compute"], budgets["D_opt"], form="var"),
        n_points=len(N),
        warnings=tuple(warnings),
        options={"relative_tolerance": relative_tolerance, "budget_labels_given": budget is not None},
    )
