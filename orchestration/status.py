"""`varscale status`: each trial's state and last metrics, read from MLflow.

Reads only (never creates the store), so it works while a launch is running and after it.
Trials of the spec that have no run yet are listed as `pending`.
"""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from var_model.errors import VarScaleError

from orchestration.study_spec import StudySpec
from orchestration.tracking import KEY_TAG, KIND_TAG, STATUS_TAG
from orchestration.trials import expand

COLUMNS = ("train_loss", "test_loss_avg", "test_loss_last", "final_test_loss_avg", "images")


def study_status(spec: StudySpec) -> list[dict]:
    """One row per trial: key, state, MLflow status, attempts, last step, last metric values."""
    if spec.tracking_uri.startswith("sqlite:///") and not Path(spec.tracking_uri[len("sqlite:///"):]).exists():
        raise VarScaleError(f"study {spec.name!r} has no MLflow store yet at {spec.tracking_uri}; "
                            "launch it first (varscale launch STUDY)")
    client = MlflowClient(spec.tracking_uri)
    experiment = client.get_experiment_by_name(spec.name)
    runs = []
    if experiment is not None:
        runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'trial'",
                                  max_results=10_000)
    by_key = {}
    for run in sorted(runs, key=lambda run: run.info.start_time):
        by_key.setdefault(run.data.tags.get(KEY_TAG), run)
    rows = []
    for trial in expand(spec):
        run = by_key.get(trial.key)
        row = {"trial": trial.key, "state": "pending", "mlflow": "-", "attempts": "0", "step": "-"}
        if run is not None:
            history = client.get_metric_history(run.info.run_id, "images") if "images" in run.data.metrics else []
            row.update(state=run.data.tags.get(STATUS_TAG, "?"), mlflow=run.info.status,
                       attempts=run.data.tags.get("varscale.attempts", "0"),
                       step=str(max((metric.step for metric in history), default="-")))
            for name in COLUMNS:
                if name in run.data.metrics:
                    row[name] = run.data.metrics[name]
        rows.append(row)
    return rows


def status_table(spec: StudySpec) -> str:
    rows = study_status(spec)
    header = ("trial", "state", "mlflow", "attempts", "step") + COLUMNS
    cells = [[row["trial"], row["state"], row["mlflow"], row["attempts"], row["step"]]
             + [f"{row[name]:.4g}" if name in row else "-" for name in COLUMNS] for row in rows]
    widths = [max(len(header[index]), *(len(line[index]) for line in cells)) for index in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in [list(header)] + cells]
    counts = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    lines.append("")
    lines.append(f"{spec.name}: " + ", ".join(f"{count} {state}" for state, count in sorted(counts.items())))
    return "\n".join(lines)
