"""Scaling laws of sample quality: sample metrics against N and C (the VAR and offset forms, each
with a run-level bootstrap), and against each trial's final test loss.

Sample metrics are only comparable under one protocol (sample count, cfg, top-k, top-p, seed,
feature network and its weights, reference statistics, implementation: FoundationVision/VAR's
"FID does not reproduce" threads are each a protocol difference). Every trial records its
protocol as `sample_protocol_*` params; `check_protocols` refuses trials that differ and names the
fields, so a law is never fitted across protocols.

Fitted quantities fall with quality, as a loss does: fd and fid as they are; accuracy, precision
and recall as their gaps 1 - x (a power law of a quantity that rises to 1 is one of its gap).
The Inception Score rises without bound and is fitted as is (alpha > 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.bootstrap import BootstrapResult, bootstrap_fit
from analysis.errors import AnalysisError, DataError
from analysis.loader import FIT_STATUSES, StudyFrame
from analysis.mlflow_schema import SAMPLE_METRICS, SAMPLE_PROTOCOL_PREFIX
from analysis.power_law import BILLION, FORMS, PFLOP, PowerLawFit, fit_power_law

GAP_METRICS = ("sample_accuracy", "sample_precision", "sample_recall")  # fitted as 1 - x
PROTOCOL_PREFIX = SAMPLE_PROTOCOL_PREFIX
LOSS_COLUMN = "test_loss_avg"
AGAINST = {"N": ("params_total", BILLION, "B"), "C": ("flops", PFLOP, "PFLOP")}


class ProtocolMismatchError(AnalysisError):
    """Sample metrics measured under different protocols cannot be fitted together."""


def _spearman(x, y) -> float:
    # scipy.stats here, not at the top: it is 0.7 s to import, and only studies that measured
    # sample quality need it
    from scipy import stats

    return float(stats.spearmanr(x, y).statistic)


def fitted_name(metric: str) -> str:
    return f"1 - {metric}" if metric in GAP_METRICS else metric


def fitted_values(metric: str, values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return 1.0 - values if metric in GAP_METRICS else values


def sample_trials(study: StudyFrame, statuses: tuple[str, ...] = FIT_STATUSES) -> pd.DataFrame:
    """The fit trials with a column per sample metric: the trial's final value where the loader
    read one, else the last point of its history (a frame built without the sample columns)."""
    trials = study.fit_trials(statuses).copy()
    curves = study.fit_curves(statuses)
    for metric in SAMPLE_METRICS:
        if metric in trials and trials[metric].notna().any():
            continue
        rows = curves[curves["metric"] == metric].sort_values("step")
        if rows.empty:
            continue
        trials[metric] = trials["trial_key"].map(rows.groupby("trial_key")["value"].last())
    return trials


def measured_metrics(trials: pd.DataFrame) -> list[str]:
    return [metric for metric in SAMPLE_METRICS if metric in trials and trials[metric].notna().any()]


def check_protocols(trials: pd.DataFrame) -> dict[str, object]:
    """The one protocol of the trials that have sample metrics; a ProtocolMismatchError naming
    each differing field and its values (with the trials of each) otherwise."""
    measured = trials[trials[measured_metrics(trials)].notna().any(axis=1)] if measured_metrics(trials) else trials[:0]
    columns = sorted(column for column in trials.columns if column.startswith(PROTOCOL_PREFIX))
    differing = {}
    for column in columns:
        values = measured[column].astype(str).where(measured[column].notna(), "(not recorded)")
        if values.nunique() > 1:
            by_value = {value: sorted(rows["trial_key"]) for value, rows in measured.groupby(values)}
            differing[column.removeprefix(PROTOCOL_PREFIX)] = by_value
    if differing:
        lines = [
            f"  {name}: " + "; ".join(f"{value} ({', '.join(keys)})" for value, keys in by.items())
            for name, by in differing.items()
        ]
        raise ProtocolMismatchError(
            "sample metrics were measured under different protocols, so no law fits them together; "
            "differing fields:\n" + "\n".join(lines) + "\nrelaunch the odd trials under one evaluation: section "
            "(or fit a subset of trials)"
        )
    first = {column.removeprefix(PROTOCOL_PREFIX): measured[column].iloc[0] for column in columns if len(measured)}
    return {name: value.item() if isinstance(value, np.generic) else value for name, value in first.items()}


@dataclass(frozen=True)
class SampleLaw:
    metric: str  # e.g. sample_fd; the fitted quantity is fitted_name(metric)
    against: str  # "N", "C" (the Pareto frontier of final points) or "test_loss"
    form: str  # "var" | "offset"
    fit: PowerLawFit | None
    bootstrap: BootstrapResult | None = None
    error: str | None = None
    budget: str = "all"
    trial_keys: tuple[str, ...] = ()
    rank_correlation: float | None = None  # against test_loss: Spearman's rho of metric vs loss

    def row(self) -> dict:
        row = {
            "metric": fitted_name(self.metric),
            "against": self.against,
            "form": self.form,
            "budget": self.budget,
            "law": None,
            "alpha": np.nan,
            "alpha_low": np.nan,
            "alpha_high": np.nan,
            "E": np.nan,
            "r": np.nan,
            "spearman": np.nan if self.rank_correlation is None else self.rank_correlation,
            "n_points": 0,
            "error": self.error,
        }
        if self.fit is not None:
            x_name = {"N": "N", "C": "C", "test_loss": "L"}[self.against]
            row.update(
                law=self.fit.law(fitted_name(self.metric), x_name),
                alpha=self.fit.alpha,
                E=self.fit.E,
                r=self.fit.r,
                n_points=self.fit.n_points,
            )
        if self.bootstrap is not None:
            row.update(alpha_low=self.bootstrap.intervals["alpha"][0], alpha_high=self.bootstrap.intervals["alpha"][1])
        return row


@dataclass(frozen=True)
class SampleFits:
    laws: tuple[SampleLaw, ...]
    protocol: dict = field(default_factory=dict)
    metrics: tuple[str, ...] = ()

    def table(self) -> pd.DataFrame:
        return pd.DataFrame.from_records([law.row() for law in self.laws])

    def law(self, metric: str, against: str, form: str = "var") -> SampleLaw:
        for law in self.laws:
            if (law.metric, law.against, law.form) == (metric, against, form):
                return law
        raise KeyError(f"no sample law {metric} vs {against} ({form}); have {[law.row()['law'] for law in self.laws]}")


def pareto_points(trials: pd.DataFrame, metric: str, compute: str = "flops") -> pd.DataFrame:
    """Trials that no trial beats at no more compute (lower fitted value): the C_min frontier of
    final points."""
    rows = trials.dropna(subset=[metric, compute]).assign(_y=lambda frame: fitted_values(metric, frame[metric]))
    rows = rows.sort_values([compute, "_y"], kind="mergesort")
    kept = rows[rows["_y"] < rows["_y"].cummin().shift(fill_value=np.inf)]
    return kept.drop(columns="_y")


def _fit(rows, metric, x_column, x_scale, x_unit, form, n_bootstrap, seed, against, budget) -> SampleLaw:
    keys = tuple(rows["trial_key"])
    try:
        x, y = rows[x_column].to_numpy(float), fitted_values(metric, rows[metric])
        options = {"form": form, "x_unit_scale": x_scale, "x_unit": x_unit}
        fit = fit_power_law(x, y, **options)
        bootstrap = None
        if n_bootstrap:
            bootstrap = bootstrap_fit(
                fit_power_law, x, y, groups=rows["trial_key"].to_numpy(), n_resamples=n_bootstrap, seed=seed, **options
            )
        rho = _spearman(x, y) if against == "test_loss" else None
        return SampleLaw(metric, against, form, fit, bootstrap, None, budget, keys, rho)
    except (AnalysisError, KeyError) as error:
        return SampleLaw(
            metric, against, form, None, error=f"{type(error).__name__}: {error}", budget=budget, trial_keys=keys
        )


def fit_sample_laws(
    study: StudyFrame, n_bootstrap: int = 200, seed: int = 0, statuses: tuple[str, ...] = FIT_STATUSES
) -> SampleFits:
    """Every measured sample metric against N (largest budget), against C (the Pareto frontier
    of final points) and against the final test loss, in the VAR and offset forms. A study whose
    trials differ in protocol raises ProtocolMismatchError; one without sample metrics gives no laws."""
    trials = sample_trials(study, statuses)
    metrics = measured_metrics(trials)
    if not metrics:
        return SampleFits(())
    protocol = check_protocols(trials)
    if "budget_value" in trials and trials["budget_value"].nunique() > 1:
        largest = trials["budget_value"].max()
        by_size, budget = trials[trials["budget_value"] == largest], f"{trials['budget_kind'].iloc[0]}={largest:.3g}"
    else:
        by_size, budget = trials, "all"
    laws = []
    for metric in metrics:
        for form in FORMS:
            laws.append(
                _fit(by_size.dropna(subset=[metric]), metric, *AGAINST["N"], form, n_bootstrap, seed, "N", budget)
            )
            laws.append(_fit(pareto_points(trials, metric), metric, *AGAINST["C"], form, n_bootstrap, seed, "C", "all"))
        if LOSS_COLUMN not in trials:
            raise DataError(f"trials have no {LOSS_COLUMN!r} column to relate sample metrics to")
        rows = trials.dropna(subset=[metric, LOSS_COLUMN])
        laws.append(_fit(rows, metric, LOSS_COLUMN, 1.0, "", "var", n_bootstrap, seed, "test_loss", "all"))
    return SampleFits(tuple(laws), protocol, tuple(metrics))
