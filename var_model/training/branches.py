"""The trainer's side of cooldown branches (the contract is in training/forks.py).

`ForkWriter` is what a trunk's loop calls after each step: at a fork step it writes the fork
and tells the callbacks. `start_from_fork` is a branch's fresh start: the fork's state put
back into the trial, after the checks that make the branch equal an independent run.
"""

from __future__ import annotations

from var_model.errors import CheckpointError
from var_model.training.callbacks import TrialCallback
from var_model.training.config import TrialConfig
from var_model.training.distributed import DistributedContext
from var_model.training.forks import Fork, load_fork, read_forks, write_fork
from var_model.training.schedules import LRSchedule
from var_model.training.setup import TrialParts
from var_model.training.state import Window, capture_state, restore_state, window_state


class ForkWriter:
    """A trunk's forks: those already written (kept as they are) and those it writes now."""

    def __init__(
        self, parts: TrialParts, config: TrialConfig, context: DistributedContext, callbacks: TrialCallback
    ) -> None:
        self.parts, self.config, self.context, self.callbacks = parts, config, context, callbacks
        # read on every rank before the first step, so that all ranks agree on which forks
        # to write (writing one is collective under FSDP)
        existing = read_forks(config.output_dir, config.to_dict()) if parts.plan.role == "trunk" else []
        self.forks: dict[int, Fork] = {fork.step: fork for fork in existing if fork.step in parts.plan.forks}
        self._record()

    def report_written(self) -> None:
        """Tell the callbacks of the forks written before this start (a resumed trunk)."""
        for step in sorted(self.forks):
            self.callbacks.on_fork(self.forks[step])

    def after_step(self, step: int, window: Window) -> None:
        """Write the fork of `step` if it is a fork step not yet written. Call it right after
        the step's update, before its log point: the fork holds the metric window that a run
        going on past this step holds (emptied only at a regular log point)."""
        budget = self.parts.plan.forks.get(step)
        if budget is None or step in self.forks:
            return
        state = capture_state(
            self.parts, window_state(window, reset=step % self.config.log_every == 0), self.config, self.context, step
        )
        if self.context.is_main:
            fork = write_fork(self.config.output_dir, budget, state)
            self.forks[step] = fork
            self._record()
            self.callbacks.on_fork(fork)
        self.context.barrier()

    def _record(self) -> None:
        self.parts.info["forks"] = [self.forks[step].to_dict() for step in sorted(self.forks)]


def start_from_fork(parts: TrialParts, window: Window, config: TrialConfig, context: DistributedContext) -> int:
    """A branch's fresh start: its fork loaded and checked, then put back. Returns its step."""
    state = load_fork(config)
    if state.get("cache_key") != parts.cache.key:
        raise CheckpointError(f"fork {config.fork_path} was trained on another token cache ({state.get('cache_key')})")
    # the branch's LR before its fork must be the one the trunk trained with, step by step
    # (implied by the agreeing fields; checked directly, as it is what exactness rests on)
    trunk_schedule = LRSchedule(**state["schedule"])
    for step in range(config.fork_step):
        if trunk_schedule.lr(step) != parts.schedule.lr(step):
            raise CheckpointError(
                f"the trunk of {config.fork_path} trained step {step + 1} at lr {trunk_schedule.lr(step)!r}, "
                f"but this branch's schedule has {parts.schedule.lr(step)!r} there; build it with branch_config"
            )
    return restore_state(parts, window, state, config, context)
