"""`varscale status`: each trial's state, progress, last metrics and spend, read from MLflow.

Reads only (never creates the store), so it works while a launch is running, from any machine
that reaches the store, and after it. Trials of the spec that have no run yet are listed as
`pending`. Progress is the run's latest train log (step of steps, train loss, images/s);
spend is summed over the run's attempts (tracking.attempts), beside the dry run's estimate
(study.time_estimates) for the same trial.
"""

from __future__ import annotations

from pathlib import Path

from analysis import mlflow_schema as schema
from analysis.text import counts_text, short_duration, text_table
from orchestration.study.spec import StudySpec
from orchestration.study.time_estimates import TimeEstimates
from orchestration.study.trial_config import plan_study
from orchestration.tracking.attempts import attempt_records
from orchestration.tracking.clients import tracking_client
from orchestration.tracking.study_runs import sqlite_path
from var_model.errors import VarScaleError

# (row key, header, format) of the metric columns; values read under both the sectioned and
# the plain names (a store from before the sections).
METRIC_COLUMNS = (
    (schema.TRAIN_LOSS, "train loss", "{:.4g}"),
    (schema.IMAGES_PER_SECOND, "img/s", "{:.3g}"),
    ("test_loss_avg", "test loss", "{:.4g}"),
    ("final_test_loss_avg", "final test loss", "{:.4g}"),
)
STEP_METRIC = "images"  # its history's last step is the trial's last logged step
HOURS = 3600.0


def _latest(metrics: dict[str, float], name: str) -> float | None:
    """A run's latest value of metric `name` (the trainer's name), stored under either name."""
    for stored in (schema.logged_metric_name(name), name):
        if stored in metrics:
            return metrics[stored]
    return None


def _last_step(client, run) -> int | None:
    for stored in (schema.logged_metric_name(STEP_METRIC), STEP_METRIC):
        if stored in run.data.metrics:
            return max((metric.step for metric in client.get_metric_history(run.info.run_id, stored)), default=None)
    return None


def _runs_by_key(client, spec: StudySpec) -> dict:
    experiment = client.get_experiment_by_name(spec.name)
    if experiment is None:
        return {}
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{schema.KIND_TAG}` = '{schema.TRIAL_KIND}'",
        max_results=10_000,
    )
    by_key = {}
    for run in sorted(runs, key=lambda run: run.info.start_time):
        by_key.setdefault(run.data.tags.get(schema.TRIAL_KEY_TAG), run)
    return by_key


def study_status(spec: StudySpec) -> list[dict]:
    """One row per trial: key, state, MLflow status, attempts, step, steps, the metric columns,
    spend in allocated seconds (gpu_seconds, cpu_seconds: duration x GPUs or CPU cores, over
    every attempt) and the dry run's estimate of it (estimated_gpu_seconds, ...)."""
    database = sqlite_path(spec.tracking_uri)
    if database and not Path(database).exists():
        raise VarScaleError(
            f"study {spec.name!r} has no MLflow store yet at {schema.redact_uri(spec.tracking_uri)}; "
            "launch it first (varscale launch STUDY)"
        )
    client = tracking_client(spec.tracking_uri)
    by_key = _runs_by_key(client, spec)
    # A study that runs elsewhere: its data.root may exist only on the cluster.
    trials = plan_study(spec, for_launch=False)
    estimates = TimeEstimates.for_study(spec, trials)
    rows = []
    for trial in trials:
        seconds = estimates.seconds(trial)
        row = {
            "trial": trial.key,
            "state": schema.PENDING,
            "mlflow": "-",
            "attempts": "0",
            "step": None,
            "steps": trial.steps,
            "gpu_seconds": 0.0,
            "cpu_seconds": 0.0,
            "estimated_gpu_seconds": seconds * trial.gpus,
            "estimated_cpu_seconds": seconds * trial.cpus,
        }
        run = by_key.get(trial.key)
        if run is not None:
            records = attempt_records(run.data.tags)
            row.update(
                state=run.data.tags.get(schema.STATUS_TAG, "?"),
                mlflow=run.info.status,
                attempts=run.data.tags.get(schema.ATTEMPTS_TAG, str(len(records))),
                step=_last_step(client, run),
                gpu_seconds=_latest(run.data.metrics, schema.GPU_SECONDS) or 0.0,
                cpu_seconds=_latest(run.data.metrics, schema.CPU_SECONDS) or 0.0,
                nodes=sorted({record.get("node", "?") for record in records}),
            )
            for name, _, _ in METRIC_COLUMNS:
                value = _latest(run.data.metrics, name)
                if value is not None:
                    row[name] = value
        rows.append(row)
    return rows


def _spend(spent: float, estimate: float) -> str:
    return f"{short_duration(spent)} / {short_duration(estimate)}" if spent or estimate else "-"


def status_table(spec: StudySpec) -> str:
    rows = study_status(spec)
    header = ("trial", "state", "attempts", "step") + tuple(title for _, title, _ in METRIC_COLUMNS)
    header += ("GPU time spent / est.", "CPU time spent / est.")
    cells = [
        [
            row["trial"],
            row["state"],
            row["attempts"],
            f"{row['step'] if row['step'] is not None else '-'}/{row['steps']}",
        ]
        + [form.format(row[name]) if name in row else "-" for name, _, form in METRIC_COLUMNS]
        + [_spend(row["gpu_seconds"], row["estimated_gpu_seconds"])]
        + [_spend(row["cpu_seconds"], row["estimated_cpu_seconds"])]
        for row in rows
    ]
    lines = text_table(header, cells)
    spent = [sum(row[name] for row in rows) / HOURS for name in ("gpu_seconds", "cpu_seconds")]
    estimated = [sum(row[name] for row in rows) / HOURS for name in ("estimated_gpu_seconds", "estimated_cpu_seconds")]
    lines.append("")
    lines.append(
        f"spend over every attempt: {spent[0]:.4g} GPU-hours, {spent[1]:.4g} CPU-core-hours; "
        f"the dry run's estimate: {estimated[0]:.4g} GPU-hours, {estimated[1]:.4g} CPU-core-hours"
    )
    lines.append(f"{spec.name}: " + counts_text([row["state"] for row in rows]))
    return "\n".join(lines)
