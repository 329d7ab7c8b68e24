"""`varscale status`: each trial's state and last metrics, read from MLflow.

Reads only (never creates the store), so it works while a launch is running and after it.
Trials of the spec that have no run yet are listed as `pending`.
"""

from __future__ import annotations

from pathlib import Path

from analysis.mlflow_schema import ATTEMPTS_TAG, KIND_TAG, PENDING, STATUS_TAG, TRIAL_KEY_TAG, TRIAL_KIND
from analysis.text import counts_text, text_table
from orchestration.study.spec import StudySpec
from orchestration.study.trial_config import plan_study
from orchestration.tracking.clients import tracking_client
from orchestration.tracking.study_runs import sqlite_path
from var_model.errors import VarScaleError

COLUMNS = ("train_loss", "test_loss_avg", "test_loss_last", "final_test_loss_avg", "images")
STEP_METRIC = "images"  # its history's last step is the trial's last logged step


def study_status(spec: StudySpec) -> list[dict]:
    """One row per trial: key, state, MLflow status, attempts, last step, last metric values."""
    database = sqlite_path(spec.tracking_uri)
    if database and not Path(database).exists():
        raise VarScaleError(
            f"study {spec.name!r} has no MLflow store yet at {spec.tracking_uri}; "
            "launch it first (varscale launch STUDY)"
        )
    client = tracking_client(spec.tracking_uri)
    experiment = client.get_experiment_by_name(spec.name)
    runs = []
    if experiment is not None:
        runs = client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.`{KIND_TAG}` = '{TRIAL_KIND}'", max_results=10_000
        )
    by_key = {}
    for run in sorted(runs, key=lambda run: run.info.start_time):
        by_key.setdefault(run.data.tags.get(TRIAL_KEY_TAG), run)
    rows = []
    for trial in plan_study(spec):
        run = by_key.get(trial.key)
        row = {"trial": trial.key, "state": PENDING, "mlflow": "-", "attempts": "0", "step": "-"}
        if run is not None:
            logged = STEP_METRIC in run.data.metrics
            history = client.get_metric_history(run.info.run_id, STEP_METRIC) if logged else []
            row.update(
                state=run.data.tags.get(STATUS_TAG, "?"),
                mlflow=run.info.status,
                attempts=run.data.tags.get(ATTEMPTS_TAG, "0"),
                step=str(max((metric.step for metric in history), default="-")),
            )
            for name in COLUMNS:
                if name in run.data.metrics:
                    row[name] = run.data.metrics[name]
        rows.append(row)
    return rows


def status_table(spec: StudySpec) -> str:
    rows = study_status(spec)
    header = ("trial", "state", "mlflow", "attempts", "step") + COLUMNS
    cells = [
        [row["trial"], row["state"], row["mlflow"], row["attempts"], row["step"]]
        + [f"{row[name]:.4g}" if name in row else "-" for name in COLUMNS]
        for row in rows
    ]
    lines = text_table(header, cells)
    lines.append("")
    lines.append(f"{spec.name}: " + counts_text([row["state"] for row in rows]))
    return "\n".join(lines)
