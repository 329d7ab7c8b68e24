"""The standard set of fits for one VAR study (what `varscale fit` and the notebook report).

- Against model size N (VAR form, N in billions): last-scale and average test loss and token error,
  one law per training budget (loss vs N is a power law at a fixed data budget; mixing budgets would
  mix curves), each with a run-level bootstrap, a prediction at 2x the largest N, and an
  extrapolation check (refit without the largest model, predict it).
- Against compute C on the C_min frontier of all runs' curves (VAR form, C in PFLOP), likewise.
- IsoFLOP (approach 2) when the study's budgets are FLOP budgets with >= 3 sizes each.
- The Chinchilla parametric L(N, D) (approach 3; D = tokens trained) for the loss metrics when the
  study has several budgets (sizes x budgets span the (N, D) plane), with its bootstrap.
- Per-scale test loss against N (largest budget).
- Sample metrics (sample_fd, sample_accuracy, ...: analysis.sample_metrics) against N, C and the
  final test loss, when the trials measured them under one protocol.

A fit that cannot be made (too few completed trials, a metric never logged) is reported with its
error instead of stopping the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from analysis.bootstrap import BootstrapResult, bootstrap_chinchilla, bootstrap_fit
from analysis.chinchilla import ChinchillaFit, fit_chinchilla
from analysis.errors import AnalysisError
from analysis.extrapolation import ExtrapolationResult, extrapolation_check
from analysis.frontier import FrontierFit, fit_frontier, frontier_extrapolation_check
from analysis.frontier_bootstrap import bootstrap_frontier
from analysis.isoflop import IsoFlopFit, fit_isoflop
from analysis.loader import FIT_STATUSES, StudyFrame
from analysis.power_law import BILLION, PFLOP, PowerLawFit, fit_power_law
from analysis.sample_metrics import SampleFits, fit_sample_laws

METRICS = ("test_loss_last", "test_loss_avg", "test_error_last", "test_error_avg")
EMPTY_ROW = {
    "law": None,
    "alpha": np.nan,
    "beta": np.nan,
    "r": np.nan,
    "n_points": 0,
    "alpha_low": np.nan,
    "alpha_high": np.nan,
    "beta_low": np.nan,
    "beta_high": np.nan,
    "holdout_relative_error": np.nan,
    "predicted_at": np.nan,
    "predicted": np.nan,
    "predicted_low": np.nan,
    "predicted_high": np.nan,
}


@dataclass(frozen=True)
class LawReport:
    metric: str
    against: str  # "N" (params_total) or "C" (FLOPs on the frontier)
    fit: PowerLawFit | None
    bootstrap: BootstrapResult | None = None
    extrapolation: ExtrapolationResult | None = None
    frontier: FrontierFit | None = None
    error: str | None = None
    budget: str = "all"  # the training budget of the trials fitted ("all" for the frontier)
    trial_keys: tuple[str, ...] = ()

    def row(self) -> dict:
        row = {"metric": self.metric, "against": self.against, "budget": self.budget, **EMPTY_ROW, "error": self.error}
        if self.fit is None:
            return row
        row.update(
            law=self.fit.law(self.metric, self.against),
            alpha=self.fit.alpha,
            beta=self.fit.beta,
            r=self.fit.r,
            n_points=self.fit.n_points,
        )
        if self.bootstrap is not None:
            row.update(
                alpha_low=self.bootstrap.intervals["alpha"][0],
                alpha_high=self.bootstrap.intervals["alpha"][1],
                beta_low=self.bootstrap.intervals["beta"][0],
                beta_high=self.bootstrap.intervals["beta"][1],
            )
            if self.bootstrap.prediction_intervals is not None:
                # The law's prediction one step beyond the data (2x the largest N or C), with its interval.
                at = self.bootstrap.options["predict_at"]
                row.update(
                    predicted_at=at,
                    predicted=float(self.fit.predict(at)),
                    predicted_low=float(self.bootstrap.prediction_intervals[0, 0]),
                    predicted_high=float(self.bootstrap.prediction_intervals[0, 1]),
                )
        if self.extrapolation is not None:
            row["holdout_relative_error"] = float(np.mean(self.extrapolation.relative_error))
        return row


@dataclass(frozen=True)
class StudyFits:
    study: str
    laws: tuple[LawReport, ...]
    per_scale: dict[str, PowerLawFit]
    isoflop: dict[str, IsoFlopFit] = field(default_factory=dict)  # metric -> fit, FLOP-budget studies only
    parametric: dict[str, ChinchillaFit] = field(default_factory=dict)  # loss metric -> L(N, D), several budgets
    parametric_bootstrap: dict[str, BootstrapResult] = field(default_factory=dict)
    budgets: tuple[str, ...] = ("all",)  # ascending; the last is the largest
    options: dict = field(default_factory=dict)
    samples: SampleFits = field(default_factory=lambda: SampleFits(()))  # sample-quality laws (none if unmeasured)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame.from_records([law.row() for law in self.laws])

    def law(self, metric: str, against: str, budget: str | None = None) -> LawReport:
        """One law; for N, `budget` defaults to the largest budget."""
        budget = budget or ("all" if against == "C" else self.budgets[-1])
        for law in self.laws:
            if (law.metric, law.against, law.budget) == (metric, against, budget):
                return law
        raise KeyError(
            f"no law for {metric} vs {against} at budget {budget}; "
            f"have {[(law.metric, law.against, law.budget) for law in self.laws]}"
        )

    def size_laws(self, budget: str | None = None) -> dict[str, LawReport]:
        """metric -> fitted law vs N at one budget (default the largest)."""
        budget = budget or self.budgets[-1]
        return {
            law.metric: law for law in self.laws if law.against == "N" and law.budget == budget and law.fit is not None
        }

    def compute_laws(self) -> dict[str, LawReport]:
        return {law.metric: law for law in self.laws if law.against == "C" and law.fit is not None}


def _with_prediction_point(bootstrap: BootstrapResult, at: float) -> BootstrapResult:
    return replace(bootstrap, options={**bootstrap.options, "predict_at": at})


def budget_groups(trials: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Trials split by training budget, ascending; one group "all" when there is a single budget."""
    if "budget_value" not in trials or trials["budget_value"].nunique(dropna=True) <= 1:
        return [("all", trials)]
    kind = trials["budget_kind"] if "budget_kind" in trials else pd.Series("budget", index=trials.index)
    groups = []
    for value, rows in trials.groupby("budget_value", sort=True):
        groups.append((f"{kind.loc[rows.index[0]]}={value:.3g}", rows))
    return groups


def _law_vs_size(trials, metric, n_bootstrap, seed, irreducible, budget) -> LawReport:
    keys = tuple(trials["trial_key"])
    try:
        rows = trials.dropna(subset=[metric, "params_total"])
        options = {"x_unit_scale": BILLION, "x_unit": "B", "irreducible": irreducible}
        fit = fit_power_law(rows["params_total"], rows[metric], **options)
        bootstrap = None
        if n_bootstrap:
            at = 2.0 * float(rows["params_total"].max())
            bootstrap = bootstrap_fit(
                fit_power_law,
                rows["params_total"].to_numpy(),
                rows[metric].to_numpy(),
                groups=rows["trial_key"].to_numpy(),
                n_resamples=n_bootstrap,
                seed=seed,
                predict_at=(np.array([at]),),
                **options,
            )
            bootstrap = _with_prediction_point(bootstrap, at)
        extrapolation = None
        # The holdout refits without the largest size, which must leave a law with a degree of
        # freedom (3 distinct sizes): 4 sizes at least.
        if rows["params_total"].nunique() >= 4:
            extrapolation = extrapolation_check(fit_power_law, rows["params_total"], rows[metric], **options)
        return LawReport(metric, "N", fit, bootstrap, extrapolation, budget=budget, trial_keys=keys)
    except (AnalysisError, KeyError) as error:
        return LawReport(metric, "N", None, error=f"{type(error).__name__}: {error}", budget=budget, trial_keys=keys)


def _law_vs_compute(curves, metric, n_bootstrap, seed, irreducible) -> LawReport:
    keys = tuple(curves["trial_key"].unique())
    try:
        frontier = fit_frontier(curves, metric=metric, irreducible=irreducible)
        bootstrap = None
        if n_bootstrap:
            at = 2.0 * float(frontier.frontier["flops"].max())
            # bootstrap_fit(fit_frontier, ...)'s result, without a DataFrame per resample
            bootstrap = bootstrap_frontier(
                curves,
                groups="trial_key",
                n_resamples=n_bootstrap,
                seed=seed,
                predict_at=(np.array([at]),),
                metric=metric,
                irreducible=irreducible,
            )
            bootstrap = _with_prediction_point(bootstrap, at)
        extrapolation = None
        if curves["trial_key"].nunique() >= 3:
            try:
                extrapolation = frontier_extrapolation_check(curves, metric=metric, irreducible=irreducible)
            except AnalysisError:
                pass  # e.g. one model size: nothing smaller to hold out from; the law itself stands
        return LawReport(metric, "C", frontier.law, bootstrap, extrapolation, frontier, trial_keys=keys)
    except (AnalysisError, KeyError) as error:
        return LawReport(metric, "C", None, error=f"{type(error).__name__}: {error}", trial_keys=keys)


def _isoflop_fits(trials: pd.DataFrame, metrics) -> dict[str, IsoFlopFit]:
    if trials.get("budget_kind") is None or not (trials["budget_kind"] == "flops").all():
        return {}
    fits = {}
    for metric in metrics:
        rows = trials.dropna(subset=[metric, "params_total", "flops"])
        try:
            fits[metric] = fit_isoflop(rows["params_total"], rows["flops"], rows[metric], budget=rows["budget_value"])
        except AnalysisError:
            continue  # fewer than 2 budgets with 3 sizes: no IsoFLOP profile to report
    return fits


def _parametric_fits(trials, metrics, n_groups, n_bootstrap, seed):
    fits, bootstraps = {}, {}
    if n_groups < 2:
        return fits, bootstraps  # one budget: D barely varies, so B and beta are not identified
    for metric in (metric for metric in metrics if metric.startswith("test_loss")):
        rows = trials.dropna(subset=[metric, "params_total", "tokens"])
        try:
            fit = fit_chinchilla(rows["params_total"], rows["tokens"], rows[metric])
            fits[metric] = fit
            if n_bootstrap:
                bootstraps[metric] = bootstrap_chinchilla(
                    rows["params_total"],
                    rows["tokens"],
                    rows[metric],
                    groups=rows["trial_key"].to_numpy(),
                    n_resamples=n_bootstrap,
                    seed=seed,
                    fit=fit,
                )
        except AnalysisError:
            continue  # fewer than 5 trials: no parametric fit to report
    return fits, bootstraps


def fit_study_laws(
    study_frame: StudyFrame,
    metrics: tuple[str, ...] = METRICS,
    n_bootstrap: int = 200,
    seed: int = 0,
    irreducible: dict[str, float] | None = None,
    statuses: tuple[str, ...] = FIT_STATUSES,
    parametric: bool = True,
) -> StudyFits:
    """Fits every metric against N (per budget) and against C for the trials whose status is in
    `statuses` (completed only by default). irreducible: per-metric constant subtracted before the
    VAR-form fit (the paper's reducible loss); 0 for metrics not named. parametric: also fit the
    Chinchilla L(N, D) (full 4,500-start grid, seconds) when the study has several budgets.
    Sample metrics (analysis.sample_metrics) are fitted too when trials measured them; trials
    measured under different sample protocols raise ProtocolMismatchError."""
    irreducible = irreducible or {}
    trials = study_frame.fit_trials(statuses)
    curves = study_frame.fit_curves(statuses)
    groups = budget_groups(trials)
    laws = []
    for budget, rows in groups:
        for metric in metrics:
            laws.append(_law_vs_size(rows, metric, n_bootstrap, seed, irreducible.get(metric, 0.0), budget))
    for metric in metrics:
        laws.append(_law_vs_compute(curves, metric, n_bootstrap, seed, irreducible.get(metric, 0.0)))
    per_scale = {}
    largest_budget_trials = groups[-1][1]
    for column in sorted(c for c in trials.columns if c.startswith("test_loss_scale_")):
        rows = largest_budget_trials.dropna(subset=[column])
        try:
            per_scale[column] = fit_power_law(rows["params_total"], rows[column], x_unit_scale=BILLION, x_unit="B")
        except AnalysisError:
            continue  # a scale with too few points is simply not drawn
    parametric_fits, parametric_bootstrap = (
        ({}, {}) if not parametric else _parametric_fits(trials, metrics, len(groups), n_bootstrap, seed)
    )
    samples = fit_sample_laws(study_frame, n_bootstrap=n_bootstrap, seed=seed, statuses=statuses)
    return StudyFits(
        study=study_frame.study,
        samples=samples,
        laws=tuple(laws),
        per_scale=per_scale,
        isoflop=_isoflop_fits(trials, metrics),
        parametric=parametric_fits,
        parametric_bootstrap=parametric_bootstrap,
        budgets=tuple(label for label, _ in groups),
        options={
            "metrics": list(metrics),
            "n_bootstrap": n_bootstrap,
            "seed": seed,
            "irreducible": irreducible,
            "statuses": list(statuses),
            "n_trials_fitted": int(len(trials)),
            "x_units": {"N": "B", "C": "PFLOP"},
            "pflop": PFLOP,
        },
    )
