"""Reads one study from MLflow into pandas: the only module of `analysis` that imports mlflow, and
it only reads. The schema it reads is docs/ARCHITECTURE.md's "MLflow schema":

- experiment name = study name; child runs tagged varscale.kind=trial carry params (strings,
  cast here), the tag varscale.status, metric histories against an integer step (with images,
  tokens, flops counters logged as metrics beside the step) and final_* metrics. Metric names
  are stored under sections (`train/loss`, `final/test_loss_avg`: mlflow_schema says why); the
  frames use the trainer's names (`train_loss`, `final_test_loss_avg`), for new and old stores;
- under budgets.strategy branches the tag varscale.role (column `role`: independent, trunk or
  branch; `trunk_key`, `fork_step` beside it). A trunk is never a point of a fit: it is the
  shared constant-LR prefix of its branches, not a trained run of any budget, so `fit_trials`
  and `fit_curves` leave trunks out and fits take each branch's final metrics and its curve
  (which starts at its fork: before it, the trunk's steps are the branch's own).

Calls: one paged search_runs for the trials plus one get_metric_history per (run, metric) that has
a history, so the cost is linear in runs x metrics. A step logged twice (a crash between logging and
checkpointing, then a resume) keeps its last-logged value.

Units: `flops` is the trainer's exact count (final_flops); `flops_6nd` = 6 * params_total * tokens is
the usual approximation, kept beside it for comparison (for VAR it is off by up to ~40%).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.errors import DataError, StudyNotFoundError
from analysis.mlflow_schema import (
    COMPLETED,
    COUNTERS,
    FAILED,
    FINAL_METRICS,
    FINAL_PREFIX,
    FLOAT_PARAMS,
    FORK_STEP_TAG,
    INDEPENDENT_ROLE,
    INTEGER_PARAMS,
    KIND_TAG,
    PER_SCALE_METRIC_PATTERN,
    ROLE_TAG,
    RUNNING,
    SAMPLE_METRICS,
    STATUS_TAG,
    STRING_PARAMS,
    STUDY_KIND,
    TRIAL_KEY_TAG,
    TRIAL_KIND,
    TRUNK_KEY_TAG,
    TRUNK_ROLE,
    plain_metric_name,
    redact_uri,
)

PER_SCALE_PATTERN = re.compile(PER_SCALE_METRIC_PATTERN)
FIT_STATUSES = (COMPLETED,)  # failed / diverged / running trials are kept but not fitted by default
RUN_STATUS_TO_TRIAL_STATUS = {
    "FINISHED": COMPLETED,
    "FAILED": FAILED,
    "KILLED": FAILED,
    "RUNNING": RUNNING,
    "SCHEDULED": RUNNING,
}


@dataclass(frozen=True)
class StudyFrame:
    """trials: one row per trial. curves: long-form metric histories (trial_key, run_id, metric, step,
    value, images, tokens, flops, depth, params_total)."""

    study: str
    trials: pd.DataFrame
    curves: pd.DataFrame
    tracking_uri: str | None = None
    experiment_id: str | None = None
    parent_run_id: str | None = None
    dropped_duplicate_runs: tuple[str, ...] = field(default=())

    def fit_trials(self, statuses: tuple[str, ...] = FIT_STATUSES) -> pd.DataFrame:
        """The trials a fit should use: by default only completed ones, and never a trunk."""
        # a frame without roles (a study from before branches) has no trunks
        roles = self.trials.get("role", pd.Series(INDEPENDENT_ROLE, index=self.trials.index))
        # a trial that ended above its token cache's unigram baseline learnt nothing beyond token
        # frequencies (the trainer's flag final_above_unigram_baseline = 1): no point of a law
        flagged = self.trials.get("above_unigram_baseline", pd.Series(0.0, index=self.trials.index)) == 1.0
        points = self.trials["status"].isin(statuses) & (roles != TRUNK_ROLE) & ~flagged
        return self.trials[points].reset_index(drop=True)

    def fit_curves(self, statuses: tuple[str, ...] = FIT_STATUSES) -> pd.DataFrame:
        keys = self.fit_trials(statuses)["trial_key"]
        return self.curves[self.curves["trial_key"].isin(keys)].reset_index(drop=True)


def _cast_param(name: str, text: str | None):
    if text is None:
        return None
    if name in STRING_PARAMS:
        return text
    for caster in (int, float):
        try:
            return caster(text)
        except ValueError:
            continue
    if name in INTEGER_PARAMS or name in FLOAT_PARAMS:
        raise DataError(f"param {name!r} should be numeric but is {text!r}")
    return text


def _cast_columns(trials: pd.DataFrame) -> pd.DataFrame:
    for name in INTEGER_PARAMS:
        if name in trials and trials[name].notna().all():
            trials[name] = trials[name].astype(np.int64)  # "1e12"-style ints arrive as floats
    for name in FLOAT_PARAMS:
        if name in trials:
            trials[name] = trials[name].astype(float)
    return trials


def _search_all(client, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _plain_metrics(run) -> dict[str, float]:
    """The run's latest metric values under the trainer's names (sectioned names, `train/loss`,
    turned back; a store from before the sections already has them)."""
    return {plain_metric_name(name): value for name, value in run.data.metrics.items()}


def _trial_row(study: str, run) -> dict:
    tags, metrics = run.data.tags, _plain_metrics(run)
    status = tags.get(STATUS_TAG) or RUN_STATUS_TO_TRIAL_STATUS.get(run.info.status, "unknown")
    row = {
        "study": study,
        "trial_key": tags.get(TRIAL_KEY_TAG, run.info.run_name),
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "status": status,
        "role": tags.get(ROLE_TAG, INDEPENDENT_ROLE),
        "trunk_key": tags.get(TRUNK_KEY_TAG),
        "fork_step": int(tags[FORK_STEP_TAG]) if FORK_STEP_TAG in tags else None,
        "run_status": run.info.status,
        "start_time": run.info.start_time,
    }
    row.update({name: _cast_param(name, value) for name, value in run.data.params.items()})
    # Finals first; a run that never finished falls back to the latest logged value.
    for name in (*COUNTERS, *FINAL_METRICS, *SAMPLE_METRICS):
        row[name] = metrics.get(f"{FINAL_PREFIX}{name}", metrics.get(name, np.nan))
    # Per-scale finals (final_test_loss_scale_KK, final_test_error_scale_KK) when the trainer logged
    # them, else the latest eval of that scale.
    per_scale = {
        name.removeprefix(FINAL_PREFIX)
        for name in metrics
        if PER_SCALE_PATTERN.fullmatch(name.removeprefix(FINAL_PREFIX))
    }
    for name in sorted(per_scale):
        row[name] = metrics.get(f"{FINAL_PREFIX}{name}", metrics.get(name, np.nan))
    return row


def _histories(client, trials: pd.DataFrame, runs_by_id: dict, metrics: tuple[str, ...] | None) -> pd.DataFrame:
    records = []
    for run_id, trial_key in zip(trials["run_id"], trials["trial_key"], strict=True):
        # stored name -> the trainer's name (the `metric` column keeps the trainer's names)
        names = {stored: plain_metric_name(stored) for stored in runs_by_id[run_id].data.metrics}
        names = {stored: name for stored, name in names.items() if not name.startswith(FINAL_PREFIX)}
        if metrics is not None:
            names = {stored: name for stored, name in names.items() if name in metrics or name in COUNTERS}
        for stored, name in names.items():
            for point in client.get_metric_history(run_id, stored):
                records.append((trial_key, run_id, name, point.step, point.value, point.timestamp))
    columns = ["trial_key", "run_id", "metric", "step", "value", "timestamp"]
    history = pd.DataFrame.from_records(records, columns=columns)
    # A resumed run may re-log a step: keep the value logged last.
    history = history.sort_values("timestamp", kind="mergesort").drop_duplicates(
        ["run_id", "metric", "step"], keep="last"
    )
    counters = (
        history[history["metric"].isin(COUNTERS)]
        .pivot_table(index=["run_id", "step"], columns="metric", values="value", aggfunc="last")
        .reset_index()
    )
    for name in COUNTERS:
        if name not in counters:
            counters[name] = np.nan
    curves = history[~history["metric"].isin(COUNTERS)].drop(columns="timestamp")
    if curves.empty or counters.empty:
        curves = curves.assign(**{name: np.nan for name in COUNTERS})
    else:
        # Counters at the same step, or the latest earlier step when an eval was logged alone.
        curves = pd.merge_asof(
            curves.sort_values("step"),
            counters[["run_id", "step", *COUNTERS]].sort_values("step"),
            on="step",
            by="run_id",
            direction="backward",
        )
    curves = curves.merge(
        trials[["run_id", *[c for c in ("depth", "params_total") if c in trials]]], on="run_id", how="left"
    )
    return curves.sort_values(["trial_key", "metric", "step"]).reset_index(drop=True)


def load_study(
    study: str, tracking_uri: str | None = None, metrics: tuple[str, ...] | None = None, load_curves: bool = True
) -> StudyFrame:
    """Loads the trials (and, unless load_curves=False, the metric histories) of one study.

    study: the MLflow experiment name. tracking_uri: e.g. "sqlite:////abs/path/mlflow.db"; None uses
    MLflow's default (MLFLOW_TRACKING_URI). metrics: restrict which histories are read (the counters
    images/tokens/flops are always read)."""
    from mlflow.tracking import MlflowClient  # imported here so `import analysis` stays fast

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        names = sorted(experiment.name for experiment in client.search_experiments())
        where = redact_uri(tracking_uri) if tracking_uri else "the default URI"
        raise StudyNotFoundError(f"no study named {study!r} in the MLflow store at {where}; studies there: {names}")
    experiment_id = experiment.experiment_id
    runs = _search_all(client, experiment_id, f"tags.`{KIND_TAG}` = '{TRIAL_KIND}'")
    parents = _search_all(client, experiment_id, f"tags.`{KIND_TAG}` = '{STUDY_KIND}'")
    # The oldest parent is the study's (the orchestrator reuses it on relaunch).
    parent_run_id = min(parents, key=lambda run: run.info.start_time).info.run_id if parents else None
    trials = pd.DataFrame.from_records([_trial_row(study, run) for run in runs])
    if trials.empty:
        raise DataError(f"study {study!r} exists but has no trial runs (tag {KIND_TAG}={TRIAL_KIND})")
    # A relaunch may create a second run for one trial: keep the completed, then the newest one.
    trials["_completed"] = trials["status"] == COMPLETED
    trials = trials.sort_values(["_completed", "start_time"], kind="mergesort")
    duplicated = trials.duplicated("trial_key", keep="last")
    dropped = tuple(trials.loc[duplicated, "run_id"])
    trials = trials[~duplicated].drop(columns="_completed")
    trials = _cast_columns(trials.sort_values(["depth", "trial_key"] if "depth" in trials else ["trial_key"]))
    if "params_total" in trials:
        trials["flops_6nd"] = 6.0 * trials["params_total"].astype(float) * trials["tokens"]
    trials = trials.reset_index(drop=True)
    runs_by_id = {run.info.run_id: run for run in runs}
    curves = (
        _histories(client, trials, runs_by_id, metrics)
        if load_curves
        else pd.DataFrame(columns=["trial_key", "run_id", "metric", "step", "value", *COUNTERS])
    )
    return StudyFrame(
        study=study,
        trials=trials,
        curves=curves,
        tracking_uri=tracking_uri,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        dropped_duplicate_runs=dropped,
    )
