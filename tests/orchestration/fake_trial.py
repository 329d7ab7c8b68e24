"""A small trial function that honours the trial contract without training a model.

It exists so the Ray/MLflow mechanics (packing, retries, resume, relaunch, multi-node) are
tested in seconds: it calls the callback like `run_trial` does, checkpoints after every step
to `output_dir/checkpoint.json` (atomically), resumes from it, and returns a real TrialResult.
`SlowTrial(seconds)` sleeps at every step, so a test can kill it mid-trial.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from var_model.training.budget import StepCost, steps_for_budget
from var_model.training.result import TrialResult


def fake_run_trial(config, callback=None, resume: bool = True, seconds_per_step: float = 0.0) -> TrialResult:
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "pid").write_text(str(os.getpid()))
    depth = config.model["depth"]
    cost = StepCost.for_batch(config.batch_size, tokens_per_image=21, flops_per_image=1000 * depth)
    steps = steps_for_budget(config.budget_kind, config.budget_value, cost)
    checkpoint = output / "checkpoint.json"
    start = json.loads(checkpoint.read_text())["step"] if resume and checkpoint.exists() else 0
    callback.on_start({"depth": depth, "steps": steps, "resumed_step": start, "fake": True})
    for step in range(start + 1, steps + 1):
        time.sleep(seconds_per_step)
        loss = 4.0 / math.sqrt(depth * step)
        callback.on_metrics(step, {"train_loss": loss, "lr": config.peak_lr, **cost.counters(step)})
        temporary = output / f".checkpoint.{os.getpid()}.tmp"
        temporary.write_text(json.dumps({"step": step}))
        os.replace(temporary, checkpoint)
        callback.on_checkpoint(step, str(checkpoint))
    diverged = config.model.get("drop_path_rate") == 0.5  # a marker tests use to ask for divergence
    metrics = {
        "final_test_loss_avg": 4.0 / math.sqrt(depth * steps),
        **{f"final_{name}": value for name, value in cost.counters(steps).items()},
    }
    (output / "samples.png").write_bytes(b"\x89PNG fake")
    result = TrialResult(
        status="diverged" if diverged else "completed",
        metrics=metrics,
        steps=steps,
        checkpoint_path=str(checkpoint),
        message="loss was NaN" if diverged else "",
    )
    callback.on_end(result)
    return result


class SlowTrial:
    """fake_run_trial with a pause at every step (a picklable callable for Ray)."""

    def __init__(self, seconds_per_step: float):
        self.seconds_per_step = seconds_per_step

    def __call__(self, config, callback=None, resume: bool = True) -> TrialResult:
        return fake_run_trial(config, callback, resume, self.seconds_per_step)


def fake_tokenizer_stage(spec) -> dict:
    path = Path(spec.storage, "token_cache", "fake")
    path.mkdir(parents=True, exist_ok=True)
    return {"cache_path": str(path), "report": {"mse": 0.5}, "baselines": {}, "reused_cache": False}


def failing_for_depth_2(config, callback=None, resume: bool = True) -> TrialResult:
    """A trial function with a bug at depth 2 (a Python error: must not be retried)."""
    if config.model["depth"] == 2:
        raise ValueError("a bug that fails the same way every time")
    return fake_run_trial(config, callback, resume)


def returned_result(key: str) -> dict:
    """What a trial's Ray task returns, at once (for tests of the launcher's collection)."""
    return {"key": key, "status": "completed", "metrics": {}, "steps": 2}


def sleep_for(seconds: float) -> None:
    """A task that is still running when a test cancels it."""
    time.sleep(seconds)
