"""The standard set of fits for one VAR study (what `varscale fit` and the notebook report):
last-scale and average test loss and token error, each against model size N (VAR form, N in
billions) and against compute on the C_min frontier (VAR form, C in PFLOP), each with a run-level
bootstrap and an extrapolation check; plus per-scale loss against N.

A fit that cannot be made (too few completed trials, a metric never logged) is reported with its
error instead of stopping the others.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from analysis.bootstrap import BootstrapResult, bootstrap_fit
from analysis.errors import AnalysisError
from analysis.extrapolation import ExtrapolationResult, extrapolation_check
from analysis.frontier import FrontierFit, fit_frontier, frontier_extrapolation_check
from analysis.loader import FIT_STATUSES, StudyFrame
from analysis.power_law import BILLION, PFLOP, PowerLawFit, fit_power_law

METRICS = ("test_loss_last", "test_loss_avg", "test_error_last", "test_error_avg")


@dataclass(frozen=True)
class LawReport:
    metric: str
    against: str  # "N" (params_total) or "C" (FLOPs on the frontier)
    fit: PowerLawFit | None
    bootstrap: BootstrapResult | None = None
    extrapolation: ExtrapolationResult | None = None
    frontier: FrontierFit | None = None
    error: str | None = None

    def row(self) -> dict:
        row = {"metric": self.metric, "against": self.against, "law": None, "alpha": np.nan, "beta": np.nan,
               "r": np.nan, "n_points": 0, "alpha_low": np.nan, "alpha_high": np.nan, "beta_low": np.nan,
               "beta_high": np.nan, "holdout_relative_error": np.nan, "predicted_at": np.nan,
               "predicted": np.nan, "predicted_low": np.nan, "predicted_high": np.nan, "error": self.error}
        if self.fit is None:
            return row
        x_name = "N" if self.against == "N" else "C"
        row.update(law=self.fit.law(self.metric, x_name), alpha=self.fit.alpha, beta=self.fit.beta,
                   r=self.fit.r, n_points=self.fit.n_points)
        if self.bootstrap is not None and self.bootstrap.prediction_intervals is not None:
            # The law's prediction one step beyond the data (2x the largest N or C), with its interval.
            at = self.bootstrap.options["predict_at"]
            row.update(predicted_at=at, predicted=float(self.fit.predict(at)),
                       predicted_low=float(self.bootstrap.prediction_intervals[0, 0]),
                       predicted_high=float(self.bootstrap.prediction_intervals[0, 1]))
        if self.bootstrap is not None:
            row.update(alpha_low=self.bootstrap.intervals["alpha"][0], alpha_high=self.bootstrap.intervals["alpha"][1],
                       beta_low=self.bootstrap.intervals["beta"][0], beta_high=self.bootstrap.intervals["beta"][1])
        if self.extrapolation is not None:
            row["holdout_relative_error"] = float(self.extrapolation.relative_error[-1])
        return row


@dataclass(frozen=True)
class StudyFits:
    study: str
    laws: tuple[LawReport, ...]
    per_scale: dict[str, PowerLawFit]
    options: dict = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame.from_records([law.row() for law in self.laws])

    def law(self, metric: str, against: str) -> LawReport:
        for law in self.laws:
            if law.metric == metric and law.against == against:
                return law
        raise KeyError(f"no law for {metric} vs {against}; have {[(l.metric, l.against) for l in self.laws]}")


def _with_prediction_point(bootstrap: BootstrapResult, at: float) -> BootstrapResult:
    return replace(bootstrap, options={**bootstrap.options, "predict_at": at})


def _law_vs_size(trials: pd.DataFrame, metric: str, n_bootstrap: int, seed: int, irreducible: float) -> LawReport:
    try:
        rows = trials.dropna(subset=[metric, "params_total"])
        options = {"x_unit_scale": BILLION, "x_unit": "B", "irreducible": irreducible}
        fit = fit_power_law(rows["params_total"], rows[metric], **options)
        bootstrap = None
        if n_bootstrap:
            at = 2.0 * float(rows["params_total"].max())
            bootstrap = bootstrap_fit(fit_power_law, rows["params_total"].to_numpy(), rows[metric].to_numpy(),
                                      groups=rows["trial_key"].to_numpy(), n_resamples=n_bootstrap, seed=seed,
                                      predict_at=(np.array([at]),), **options)
            bootstrap = _with_prediction_point(bootstrap, at)
        extrapolation = None
        if rows["params_total"].nunique() >= 3:
            extrapolation = extrapolation_check(fit_power_law, rows["params_total"], rows[metric], **options)
        return LawReport(metric, "N", fit, bootstrap, extrapolation)
    except (AnalysisError, KeyError) as error:
        return LawReport(metric, "N", None, error=f"{type(error).__name__}: {error}")


def _law_vs_compute(curves: pd.DataFrame, metric: str, n_bootstrap: int, seed: int, irreducible: float) -> LawReport:
    try:
        frontier = fit_frontier(curves, metric=metric, irreducible=irreducible)
        bootstrap = None
        if n_bootstrap:
            at = 2.0 * float(frontier.frontier["flops"].max())
            bootstrap = bootstrap_fit(fit_frontier, curves, groups="trial_key", n_resamples=n_bootstrap, seed=seed,
                                      predict_at=(np.array([at]),), metric=metric, irreducible=irreducible)
            bootstrap = _with_prediction_point(bootstrap, at)
        extrapolation = None
        if curves["trial_key"].nunique() >= 3:
            extrapolation = frontier_extrapolation_check(curves, metric=metric, irreducible=irreducible)
        return LawReport(metric, "C", frontier.law, bootstrap, extrapolation, frontier)
    except (AnalysisError, KeyError) as error:
        return LawReport(metric, "C", None, error=f"{type(error).__name__}: {error}")


def fit_study_laws(
    study_frame: StudyFrame,
    metrics: tuple[str, ...] = METRICS,
    n_bootstrap: int = 200,
    seed: int = 0,
    irreducible: dict[str, float] | None = None,
    statuses: tuple[str, ...] = FIT_STATUSES,
) -> StudyFits:
    """Fits every metric against N and against C for the trials whose status is in `statuses`
    (completed only by default). irreducible: per-metric constant subtracted before the VAR-form fit
    (the paper's reducible loss); 0 for metrics not named."""
    irreducible = irreducible or {}
    trials = study_frame.fit_trials(statuses)
    curves = study_frame.fit_curves(statuses)
    laws = []
    for metric in metrics:
        laws.append(_law_vs_size(trials, metric, n_bootstrap, seed, irreducible.get(metric, 0.0)))
    for metric in metrics:
        laws.append(_law_vs_compute(curves, metric, n_bootstrap, seed, irreducible.get(metric, 0.0)))
    per_scale = {}
    for column in sorted(c for c in trials.columns if c.startswith("test_loss_scale_")):
        rows = trials.dropna(subset=[column])
        try:
            per_scale[column] = fit_power_law(rows["params_total"], rows[column], x_unit_scale=BILLION, x_unit="B")
        except AnalysisError:
            continue  # a scale with too few points is simply not drawn
    return StudyFits(study=study_frame.study, laws=tuple(laws), per_scale=per_scale,
                     options={"metrics": list(metrics), "n_bootstrap": n_bootstrap, "seed": seed,
                              "irreducible": irreducible, "statuses": list(statuses),
                              "n_trials_fitted": int(len(trials)), "x_units": {"N": "B", "C": "PFLOP"},
                              "pflop": PFLOP})
