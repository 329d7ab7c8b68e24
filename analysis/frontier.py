"""The compute Pareto frontier (VAR's C_min, Figure 6; Hoffmann's approach 1) and fits on it.

From every run's training curve, the frontier keeps the points that no other point beats: lower
loss at no more compute. It is the lower envelope of loss vs FLOPs over all runs. A power law fitted
to it is the paper's L(C_min); the model sizes on it give N_opt(C).

Caveat (Hoffmann et al. 2022; Hägele et al. 2024): mid-run points of a long cosine schedule
overestimate the loss of a run trained to that length; prefer final points or checkpoints after a
cooldown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.errors import DataError, FitError
from analysis.extrapolation import ExtrapolationResult
from analysis.power_law import PFLOP, PowerLawFit, fit_power_law

REQUIRED_CURVE_COLUMNS = ("trial_key", "metric", "step", "value")


def compute_frontier(
    curves: pd.DataFrame, metric: str = "test_loss_last", compute_column: str = "flops"
) -> pd.DataFrame:
    """Pareto points of `metric` against `compute_column`, sorted by compute, one row per point kept
    (with its trial_key, step and any other columns of the curve rows, e.g. params_total)."""
    missing = [column for column in (*REQUIRED_CURVE_COLUMNS, compute_column) if column not in curves.columns]
    if missing:
        raise DataError(f"curves lacks column(s) {missing}; it has {list(curves.columns)}")
    points = curves[(curves["metric"] == metric)].dropna(subset=["value", compute_column])
    points = points[points[compute_column] > 0]
    if points.empty:
        available = sorted(curves["metric"].unique().tolist())
        raise DataError(f"no points of metric {metric!r} with positive {compute_column}; metrics present: {available}")
    # Among equal compute the lowest value comes first, so it is the one kept.
    points = points.sort_values([compute_column, "value"], kind="mergesort")
    best_before = np.minimum.accumulate(points["value"].to_numpy())
    previous_best = np.concatenate([[np.inf], best_before[:-1]])
    keep = points["value"].to_numpy() < previous_best
    return points[keep].reset_index(drop=True)


@dataclass(frozen=True)
class FrontierFit:
    frontier: pd.DataFrame
    law: PowerLawFit  # metric vs compute on the frontier
    n_opt_law: PowerLawFit | None  # params_total of the frontier's runs vs compute, when known
    metric: str
    n_trials_on_frontier: int
    options: dict = field(default_factory=dict)

    def predict(self, compute) -> np.ndarray:
        return self.law.predict(compute)

    def parameters(self) -> dict[str, float]:
        values = dict(self.law.parameters())
        if self.n_opt_law is not None:
            values["n_exponent"] = self.n_opt_law.alpha
        return values


def fit_frontier(
    curves: pd.DataFrame,
    metric: str = "test_loss_last",
    form: str = "var",
    compute_column: str = "flops",
    x_unit_scale: float = PFLOP,
    x_unit: str = "PFLOP",
    irreducible: float = 0.0,
) -> FrontierFit:
    """Fits the power law of `metric` on the compute frontier (VAR form with C in PFLOP by default,
    so (beta, alpha) compare with the paper's L = (2.2e-5 C)^-0.13)."""
    frontier = compute_frontier(curves, metric, compute_column)
    if len(frontier) < (2 if form == "var" else 3):
        raise FitError(f"the {metric} frontier has only {len(frontier)} point(s); train more runs or log more evals")
    options = {"form": form, "x_unit_scale": x_unit_scale, "x_unit": x_unit}
    if form == "var":
        options["irreducible"] = irreducible
    law = fit_power_law(frontier[compute_column], frontier["value"], **options)
    n_opt_law = None
    # N_opt ~ C^a: with only two sizes on the frontier it is a step, not a trend.
    if "params_total" in frontier.columns and frontier["params_total"].nunique() >= 3:
        n_opt_law = fit_power_law(frontier[compute_column], frontier["params_total"], form="var")
    return FrontierFit(
        frontier=frontier,
        law=law,
        n_opt_law=n_opt_law,
        metric=metric,
        n_trials_on_frontier=int(frontier["trial_key"].nunique()),
        options={"metric": metric, "compute_column": compute_column, **options},
    )


def frontier_extrapolation_check(
    curves: pd.DataFrame,
    metric: str = "test_loss_last",
    compute_column: str = "flops",
    **fit_options,
):
    """Fits the frontier without the largest model's run(s) and predicts that model's final point.

    The largest model is the one with the most params_total (or, without that column, the trial
    that used the most compute)."""
    points = curves[curves["metric"] == metric].dropna(subset=["value", compute_column])
    size_column = "params_total" if "params_total" in points.columns else compute_column
    sizes = points.groupby("trial_key")[size_column].max()
    held_out = sizes.index[sizes == sizes.max()]
    if len(held_out) == len(sizes):
        raise FitError("every run has the same size: nothing smaller to fit the frontier on")
    fit = fit_frontier(
        curves[~curves["trial_key"].isin(held_out)], metric=metric, compute_column=compute_column, **fit_options
    )
    finals = points[points["trial_key"].isin(held_out)].sort_values(compute_column).groupby("trial_key").tail(1)
    actual = finals["value"].to_numpy()
    predicted = fit.predict(finals[compute_column].to_numpy())
    relative_error = (predicted - actual) / actual
    return ExtrapolationResult(
        fit=fit,
        held_out_rows=finals.index.to_numpy(),
        held_out_x=finals[compute_column].to_numpy(),
        actual=actual,
        predicted=predicted,
        relative_error=relative_error,
        mean_absolute_relative_error=float(np.mean(np.abs(relative_error))),
    )
