"""A fast trial function that honours the trunk and branch contract of var_model/training/forks.py
without training a model, so that the Ray/MLflow mechanics of `budgets.strategy: branches`
(a branch started by its fork, kills, relaunches, fork deletion) are tested in seconds.

Like tests/orchestration/fake_trial.py it checkpoints after every step to checkpoint.json and
resumes from it. A trunk writes real fork files (`write_fork`, hashed and read-only) at its
budgets' fork steps and reports them with `on_fork`, the ones written before a resume again;
a branch starts from its fork through `load_fork` (hash, step and config checked as the trainer
checks them) and trains its cooldown only. Every trained step is appended to steps.log, so a
test can tell what ran twice.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from var_model.training.budget import StepCost, steps_for_budget
from var_model.training.forks import load_fork, read_forks, write_fork
from var_model.training.result import TrialResult
from var_model.training.schedules import fork_steps


def _cost(config) -> StepCost:
    return StepCost.for_batch(config.batch_size, tokens_per_image=21, flops_per_image=1000 * config.model["depth"])


def _fork_state(step: int, config) -> dict:
    return {
        "step": step,
        "model": {},
        "optimizer": {},
        "schedule": {},
        "rng": {},
        "data_position": step,
        "trial_config": config.to_dict(),
    }


class BranchingTrial:
    """The trial function. seconds_per_step: role -> a pause at every step (so that a test can
    kill a trial mid-run, or see branches run while their trunk trains); fail_keys: the trials
    (by output folder name) that raise a Python error, as a bug would."""

    def __init__(self, seconds_per_step: dict[str, float] | None = None, fail_keys: tuple[str, ...] = ()):
        self.seconds_per_step = seconds_per_step or {}
        self.fail_keys = fail_keys

    def __call__(self, config, callback=None, resume: bool = True) -> TrialResult:
        output = Path(config.output_dir)
        output.mkdir(parents=True, exist_ok=True)
        (output / "pid").write_text(str(os.getpid()))
        if output.name in self.fail_keys:
            raise ValueError(f"a bug in {output.name}")
        cost = _cost(config)
        budget_steps = steps_for_budget(config.budget_kind, config.budget_value, cost)
        forks: dict[int, float] = {}
        start = 0
        if config.role == "trunk":
            steps_by_budget = {
                budget: steps_for_budget(config.budget_kind, budget, cost) for budget in config.fork_budgets
            }
            forks = {
                step: budget
                for budget, step in fork_steps(steps_by_budget, config.decay_fraction, config.warmup_steps).items()
            }
            end = max(forks)
        else:
            end = budget_steps
        checkpoint = output / "checkpoint.json"
        if resume and checkpoint.exists():
            start = json.loads(checkpoint.read_text())["step"]
        elif config.role == "branch":
            start = int(load_fork(config)["step"])
        written = {fork.step: fork for fork in read_forks(output, config.to_dict())} if forks else {}
        callback.on_start(
            {"depth": config.model["depth"], "steps": end, "resumed_step": start, "fake": True, "role": config.role}
        )
        for step in sorted(written):
            callback.on_fork(written[step])
        for step in range(start + 1, end + 1):
            time.sleep(self.seconds_per_step.get(config.role, 0.0))
            with (output / "steps.log").open("a") as log:
                log.write(f"{step}\n")
            callback.on_metrics(step, {"train_loss": 4.0 / math.sqrt(step), **cost.counters(step)})
            if step in forks and step not in written:
                written[step] = write_fork(output, forks[step], _fork_state(step, config))
                callback.on_fork(written[step])
            temporary = output / f".checkpoint.{os.getpid()}.tmp"
            temporary.write_text(json.dumps({"step": step}))
            os.replace(temporary, checkpoint)
            callback.on_checkpoint(step, str(checkpoint))
        metrics = {
            "final_test_loss_avg": 4.0 / math.sqrt(end),
            **{f"final_{name}": value for name, value in cost.counters(end).items()},
        }
        result = TrialResult(status="completed", metrics=metrics, steps=end, checkpoint_path=str(checkpoint))
        callback.on_end(result)
        return result
