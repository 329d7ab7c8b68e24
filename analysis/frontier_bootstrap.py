"""The run-level bootstrap of the compute-frontier law, without rebuilding a DataFrame per resample.

`bootstrap_fit(fit_frontier, curves, groups="trial_key", ...)` copies the curves of the drawn runs
into a new frame and recomputes the Pareto frontier with pandas for every resample: 200 resamples
of 4 metrics took 10 s of the demo's fit. Here the metric's points are read out of the frame once,
and a resample's frontier is a lexsort of the drawn runs' points.

It is the same computation, so the result is bit for bit `bootstrap_fit`'s (tests compare them):
- A run drawn twice adds points equal to its first copy's; a copy never beats the running minimum
  its first copy set, so the frontier of a resample is that of its distinct runs.
- Ties (equal compute and value) go, as in the frame's stable sort, to the run drawn first, then to
  the earlier row: the sort key is (compute, value, first draw of the run, row).
- The power laws are fitted by the same `fit_power_law` calls on the same points in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.bootstrap import BootstrapResult, _group_rows, _resample, _result, _validate
from analysis.errors import DataError, FitError
from analysis.frontier import fit_frontier
from analysis.power_law import PFLOP, fit_power_law


@dataclass(frozen=True)
class _MetricPoints:
    """The rows of `curves` that can lie on the frontier: the metric's, with a value and positive compute."""

    row: np.ndarray  # position in curves (the last tie-break)
    group: np.ndarray  # run index, as bootstrap._group_rows numbers them
    compute: np.ndarray
    value: np.ndarray
    params_total: np.ndarray | None  # None when curves has no params_total column


def _metric_points(curves: pd.DataFrame, metric: str, compute_column: str, group_labels) -> _MetricPoints:
    _, group_of_row = np.unique(np.asarray(group_labels), return_inverse=True)
    compute = curves[compute_column]
    selected = ((curves["metric"] == metric) & curves["value"].notna() & compute.notna() & (compute > 0)).to_numpy()
    rows = np.flatnonzero(selected)
    params = curves["params_total"].to_numpy(dtype=float)[rows] if "params_total" in curves.columns else None
    return _MetricPoints(
        row=rows,
        group=group_of_row[rows],
        compute=curves[compute_column].to_numpy(dtype=float)[rows],
        value=curves["value"].to_numpy(dtype=float)[rows],
        params_total=params,
    )


def _resample_values(points: _MetricPoints, n_groups: int, chosen, metric: str, irreducible: float, predict_at):
    """fit_frontier's parameters() and predict(*predict_at) on the runs `chosen` (with repeats)."""
    first_draw = np.full(n_groups, -1)
    drawn_groups, first_position = np.unique(chosen, return_index=True)
    first_draw[drawn_groups] = first_position
    drawn = np.flatnonzero(first_draw[points.group] >= 0)
    if drawn.size == 0:
        raise DataError(f"no points of metric {metric!r} with positive compute in this resample")
    order = drawn[
        np.lexsort((points.row[drawn], first_draw[points.group[drawn]], points.value[drawn], points.compute[drawn]))
    ]
    values = points.value[order]
    previous_best = np.concatenate([[np.inf], np.minimum.accumulate(values)[:-1]])
    on_frontier = order[values < previous_best]
    if len(on_frontier) < 2:
        raise FitError(f"the {metric} frontier has only {len(on_frontier)} point(s); train more runs or log more evals")
    compute = points.compute[on_frontier]
    law = fit_power_law(
        compute, points.value[on_frontier], form="var", x_unit_scale=PFLOP, x_unit="PFLOP", irreducible=irreducible
    )
    result = dict(law.parameters())
    if points.params_total is not None:
        params = points.params_total[on_frontier]
        # pandas' nunique, which fit_frontier asks, does not count NaN
        if np.unique(params[~np.isnan(params)]).size >= 3:
            result["n_exponent"] = fit_power_law(compute, params, form="var").alpha
    prediction = None if predict_at is None else np.atleast_1d(law.predict(*predict_at))
    return result, prediction


def bootstrap_frontier(
    curves: pd.DataFrame,
    groups: str = "trial_key",
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    predict_at: tuple | None = None,
    metric: str = "test_loss_last",
    irreducible: float = 0.0,
) -> BootstrapResult:
    """What `bootstrap_fit(fit_frontier, curves, groups=groups, n_resamples=..., seed=..., confidence=...,
    predict_at=..., metric=metric, irreducible=irreducible)` returns (the VAR form, compute in
    PFLOP, `flops` as the compute column: fit_frontier's defaults), computed faster."""
    _validate(n_resamples, confidence)
    estimate_fit = fit_frontier(curves, metric=metric, irreducible=irreducible)
    estimate = dict(estimate_fit.parameters())
    labels = curves[groups].to_numpy()
    group_rows = _group_rows(labels, len(curves))
    points = _metric_points(curves, metric, "flops", labels)

    def fit_resample(chosen):
        return _resample_values(points, len(group_rows), chosen, metric, irreducible, predict_at)

    records, predictions, n_failed = _resample(fit_resample, len(group_rows), n_resamples, seed)
    options = {"fit_function": "fit_frontier", "resample_unit": "run", "metric": metric, "irreducible": irreducible}
    return _result(estimate, records, predictions, confidence, n_resamples, n_failed, seed, options)
