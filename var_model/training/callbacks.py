"""How a trial reports: the `TrialCallback` interface and the default `JsonlCallback`.

The trainer calls these on the main rank only. The orchestration layer plugs MLflow in by
subclassing `TrialCallback`; this module knows nothing of it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from var_model.files import atomic_write_text

if TYPE_CHECKING:
    from var_model.training.forks import Fork
    from var_model.training.result import TrialResult


class TrialCallback:
    """Base class: every method is an optional no-op."""

    def on_start(self, info: dict[str, Any]) -> None:
        """Before the first step. `info` holds depth, width, params_total, params_per_token,
        flops_per_image, flops_per_image_6n, steps, lr, base_lr, batch_size, budget_kind,
        budget_value, schedule, seed, `resumed_step` (the step of the trial's own checkpoint
        it resumes from; 0 otherwise), `role` (independent | trunk | branch), `budget_steps`
        (the steps of the budget), `steps_trained` (those this trial trains from its start:
        0 or a branch's fork), a branch's `fork_step` and `fork_path`, a trunk's `forks`."""

    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """At each log and evaluation point; `metrics` always holds images, tokens, flops."""

    def on_checkpoint(self, step: int, path: str) -> None:
        """After a checkpoint was written (atomically) to `path`."""

    def on_fork(self, fork: "Fork") -> None:
        """A trunk only: as soon as the fork of a budget exists (path, sha256, step, budget;
        see training/forks.py), so that its branch can start; on a resume, again for the forks
        written before, in step order."""

    def on_end(self, result: "TrialResult") -> None:
        """Once, with the final result, whether completed or diverged."""


class CallbackList(TrialCallback):
    """Fans each event out to several callbacks, in order."""

    def __init__(self, callbacks: list[TrialCallback | None]) -> None:
        self.callbacks = [callback for callback in callbacks if callback is not None]

    def on_start(self, info: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_start(info)

    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        for callback in self.callbacks:
            callback.on_metrics(step, metrics)

    def on_checkpoint(self, step: int, path: str) -> None:
        for callback in self.callbacks:
            callback.on_checkpoint(step, path)

    def on_fork(self, fork: "Fork") -> None:
        for callback in self.callbacks:
            callback.on_fork(fork)

    def on_end(self, result: "TrialResult") -> None:
        for callback in self.callbacks:
            callback.on_end(result)


def _json_value(value: Any) -> Any:
    # NaN/inf are not JSON; a diverged trial's last loss must still be written.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class JsonlCallback(TrialCallback):
    """Appends one JSON object per event to a metrics.jsonl file:
    {"event": "start", ...info}, {"event": "metrics", "step": s, ...metrics},
    {"event": "checkpoint", "step": s, "path": p}, {"event": "fork", "step": s, "path": p,
    "sha256": h, "budget_value": b}, {"event": "end", ...result}.

    On a resume it first drops the lines written after the checkpoint's step (a crash
    between logging and checkpointing would otherwise leave them twice)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _write(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({key: _json_value(value) for key, value in record.items()})
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def on_start(self, info: dict[str, Any]) -> None:
        resumed_step = int(info.get("resumed_step", 0))
        if self.path.exists():
            kept = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash mid-write
                # fork events are not kept: a resumed trunk reports its forks again
                if (
                    resumed_step
                    and record.get("event") not in ("end", "fork")
                    and record.get("step", 0) <= resumed_step
                ):
                    kept.append(line)
            # a fresh start (resumed_step 0) begins a new file; atomic: a crash here keeps the old one
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        self._write({"event": "start", **info})

    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self._write({"event": "metrics", "step": step, **metrics})

    def on_checkpoint(self, step: int, path: str) -> None:
        self._write({"event": "checkpoint", "step": step, "path": path})

    def on_fork(self, fork: "Fork") -> None:
        self._write({"event": "fork", **fork.to_dict()})

    def on_end(self, result: "TrialResult") -> None:
        self._write({"event": "end", **result.to_dict()})


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The metrics records of a metrics.jsonl file, the last one kept per step."""
    by_step: dict[int, dict[str, Any]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("event") == "metrics":
            by_step.setdefault(record["step"], {}).update(record)
    return [by_step[step] for step in sorted(by_step)]
