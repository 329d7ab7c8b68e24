"""MLflow on the trial side: a TrialCallback that writes into one existing child run.

The driver created the run (tracking.study_runs); this callback only appends to it by its
explicit run id, with one `log_batch` per event (one SQLite transaction, ~20-35 ms), so a
resumed or retried trial writes into the same run and concurrent trials never create schema.
A resume may re-log steps between the last checkpoint and the crash: readers keep the last
value per step (docs/ARCHITECTURE.md, measured), and the checkpoint's step is recorded as a tag.

Metric names are stored under sections (`schema.logged_metric_name`: `train/loss`, ...) so that
the MLflow chart view groups them. At each train log the callback also logs the measured
images/s and writes `<output_dir>/progress.json` (schema.PROGRESS_FILE: step, steps,
train_loss, images_per_second, time) atomically, for the launcher's live display.
"""

from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag

from analysis import mlflow_schema as schema
from orchestration.tracking.clients import tracking_client
from var_model.files import atomic_write_json
from var_model.training.callbacks import TrialCallback
from var_model.training.result import RESULT_FILE
from var_model.training.trainer import METRICS_FILE

SAMPLE_GRID_NAMES = ("samples.png", "sample_grid.png")
# The trial's files logged as artifacts of its run at the end, when they exist.
TRIAL_FILES = (*SAMPLE_GRID_NAMES, schema.TRIAL_CONFIG_FILE, METRICS_FILE, RESULT_FILE)


class MlflowTrialCallback(TrialCallback):
    def __init__(self, tracking_uri: str, run_id: str, output_dir: str):
        self.client = tracking_client(tracking_uri)
        self.run_id = run_id
        self.output_dir = Path(output_dir)
        self.forks_written: list[int] = []  # a trunk's fork steps, as on_fork reports them
        self.steps = 0  # the trial's total, from on_start
        # (time, images) at the previous train log: images/s is measured between two logs, so the
        # evaluations in between count (it is the rate the trial achieves) and a resume's start-up
        # does not (on_start forgets the point).
        self._last_rate_point: tuple[float, float] | None = None

    def _batch(self, metrics=(), params=(), tags=()) -> None:
        self.client.log_batch(self.run_id, metrics=list(metrics), params=list(params), tags=list(tags))

    def on_start(self, info: dict[str, Any]) -> None:
        # The driver logged the spec's params at creation; add only the trainer's extra ones.
        # Re-logging a param with a different value is an MLflow error, so existing keys are
        # compared instead and a disagreement is recorded as a tag (visible, never fatal).
        self.steps = int(info.get("steps", 0) or 0)
        self._last_rate_point = None
        logged = self.client.get_run(self.run_id).data.params
        new_params, tags = (
            [],
            [
                RunTag(schema.NODE_TAG, socket.gethostname()),
                RunTag(schema.PID_TAG, str(os.getpid())),
                RunTag(schema.RESUMED_STEP_TAG, str(int(info.get("resumed_step", 0)))),
            ],
        )
        for key, value in info.items():
            if not isinstance(value, (int, float, str, bool)) or key == "resumed_step":
                continue
            text = str(value)
            if key not in logged:
                new_params.append(Param(key, text[: schema.PARAM_VALUE_LIMIT]))
            elif logged[key] != text and not _same_number(logged[key], text):
                tags.append(RunTag(f"{schema.TRAINER_VALUE_TAG_PREFIX}{key}", text[: schema.TAG_VALUE_LIMIT]))
        self._batch(params=new_params, tags=tags)

    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        numbers = {key: float(value) for key, value in metrics.items() if isinstance(value, (int, float))}
        if schema.TRAIN_LOSS in numbers:
            rate = self._images_per_second(numbers.get("images"))
            if rate is not None:
                numbers[schema.IMAGES_PER_SECOND] = rate
            self._write_progress(int(step), numbers)
        # NaN is a legitimate value to log (a diverging loss); MLflow stores it.
        self._batch(
            metrics=[Metric(schema.logged_metric_name(key), value, now, int(step)) for key, value in numbers.items()]
        )

    def _images_per_second(self, images: float | None) -> float | None:
        if images is None:
            return None
        now, previous = time.time(), self._last_rate_point
        self._last_rate_point = (now, images)
        if previous is None or now <= previous[0] or images < previous[1]:
            return None
        return (images - previous[1]) / (now - previous[0])

    def _write_progress(self, step: int, numbers: dict[str, float]) -> None:
        progress = {
            "step": step,
            "steps": self.steps,
            "train_loss": numbers[schema.TRAIN_LOSS],
            "images_per_second": numbers.get(schema.IMAGES_PER_SECOND, math.nan),
            "time": time.time(),
        }
        # NaN is not JSON: a rate not yet measured (the first log) or a NaN loss is written as null.
        cleaned = {
            key: (None if isinstance(value, float) and not math.isfinite(value) else value)
            for key, value in progress.items()
        }
        self.output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.output_dir / schema.PROGRESS_FILE, cleaned)

    def on_checkpoint(self, step: int, path: str) -> None:
        self._batch(tags=[RunTag(schema.CHECKPOINT_STEP_TAG, str(int(step)))])

    def on_fork(self, fork) -> None:
        # a trunk's progress in its own run; the driver learns of forks from their files
        # (execution.branch_scheduling), so this tag is for people and `varscale status`
        self.forks_written = sorted({*self.forks_written, int(fork.step)})
        self._batch(tags=[RunTag(schema.FORKS_WRITTEN_TAG, ",".join(str(step) for step in self.forks_written))])

    def on_end(self, result) -> None:
        now = int(time.time() * 1000)
        finals = [
            Metric(schema.logged_metric_name(key), float(value), now, int(result.steps))
            for key, value in result.metrics.items()
        ]
        self._batch(metrics=finals, tags=[RunTag(schema.STEPS_DONE_TAG, str(result.steps))])
        if result.message:
            self.client.set_tag(self.run_id, schema.MESSAGE_TAG, result.message[: schema.TAG_VALUE_LIMIT])
        for name in TRIAL_FILES:
            if (self.output_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.output_dir / name))
        # The status tag and terminal status are set by the task wrapper after on_end returns,
        # so a crash inside on_end leaves the trial unfinished (it will be resumed).


def _same_number(first: str, second: str) -> bool:
    try:
        a, b = float(first), float(second)
    except ValueError:
        return False
    return a == b or math.isclose(a, b, rel_tol=1e-9)
