"""Cooldown branches: what a fork is, where a trial's role puts its steps, and fork files.

One wsd run per budget repeats work: before its decay a run of budget B is warm-up then the
peak LR, the same for every B (Hägele et al. 2024, arXiv 2405.18392). So a **trunk** trains
that shared prefix once and a **branch** per budget trains only its cooldown. The contract
an orchestrator follows (steps(B) = `budget.steps_for_budget`, fork(B) =
`schedules.fork_step(steps(B), decay_fraction)` = round((1 - f) x steps(B))):

1. Trunk: `trunk_config(base, budgets, output_dir)`, i.e. `base` (schedule wsd, a
   decay_fraction in (0, 1), `warmup_steps` set) with `fork_budgets` = the budgets and
   `budget_value` = the largest. `run_trial` trains steps 1 .. fork(largest) at the wsd LR of
   the largest budget, which equals every budget's wsd LR before its fork. Right after step
   fork(B) it writes `output_dir/forks/step_<fork>.pt` (the state an independent run of B
   holds after that step, as a regular checkpoint holds it) once: created atomically,
   read-only, never overwritten, with `step_<fork>.json` beside it (step, budget_value,
   sha256, path, the trunk's trial config). Then `TrialCallback.on_fork(fork)` gets the
   `Fork`; the trunk's `TrialResult.info["forks"]` lists them all (`Fork.to_dict()`), and
   `read_forks(output_dir)` reads them back at any time. Two budgets with one fork step are a
   ConfigError (no merge: drop one). A killed trunk resumes from its own checkpoint.pt; on
   start it reports the forks already written (on_fork again, in step order) and keeps them;
   `resume=False` restarts its own files but keeps its forks too (immutable; the rerun skips
   them). A trunk's budgets are fixed at its start: forks in its output_dir from a trunk of
   another config are a TrialError. `on_fork` runs inside the trunk's loop on its main rank:
   it should only record or send the fork, and return.
2. Branch: `branch_config(trunk, fork, output_dir)` once its fork exists. On a fresh start
   `run_trial` checks the fork's sha256 (a mismatch is a CheckpointError naming the file and
   both hashes), that the fork was written at `fork_step` = fork(budget_value), and that the
   branch's config agrees with the trunk's in every field except `BRANCH_FREE_FIELDS` and the
   resume-free ones; then it trains steps fork + 1 .. steps(B) with the wsd cooldown of B. A
   branch with its own checkpoint.pt resumes from that instead. Its counters (images, tokens,
   flops) and `TrialResult.steps` count the whole budget from step 0, as the independent run's
   do; `info["steps_trained"]` = steps(B) - fork is what it actually trains.
   It equals, bit for bit on CPU, `base.replace(budget_value=B)` run from scratch (same
   warmup_steps: choose it once per trunk, e.g. warmup_fraction x steps of the smallest budget).
3. A fork must outlive its branches: delete it with `delete_fork` once they have finished.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from var_model.errors import CheckpointError, ConfigError, TrialError
from var_model.files import atomic_write_json, file_sha256
from var_model.training.budget import StepCost, steps_for_budget
from var_model.training.checkpoint import load_checkpoint, write_temporary_checkpoint
from var_model.training.config import TrialConfig
from var_model.training.config_comparison import BRANCH_FREE_FIELDS, RESUME_FREE_FIELDS, differing_fields
from var_model.training.schedules import fork_step, fork_steps

FORKS_DIR = "forks"
FORK_STEP_DIGITS = 9


@dataclass(frozen=True)
class Fork:
    """A fork checkpoint a trunk wrote: after `step` steps, for the branch of `budget_value`."""

    step: int
    budget_value: float
    path: str
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Fork:
        return cls(int(values["step"]), float(values["budget_value"]), str(values["path"]), str(values["sha256"]))


@dataclass(frozen=True)
class ForkPlan:
    """Where a trial's role puts its steps. budget_steps: steps(budget_value), the length of
    its schedule; start_step: a branch's fork step (0 otherwise); end_step: where training
    stops (budget_steps, or a trunk's last fork); forks: a trunk's fork steps -> budgets."""

    role: str
    budget_steps: int
    start_step: int = 0
    end_step: int = 0
    forks: dict[int, float] = field(default_factory=dict)

    @classmethod
    def for_trial(cls, config: TrialConfig, cost: StepCost, budget_steps: int, warmup_steps: int) -> ForkPlan:
        if config.role == "independent":
            return cls("independent", budget_steps, 0, budget_steps)
        if config.role == "trunk":
            steps_by_budget = {
                budget: steps_for_budget(config.budget_kind, budget, cost) for budget in config.fork_budgets
            }
            by_budget = fork_steps(steps_by_budget, config.decay_fraction, warmup_steps)
            forks = {step: budget for budget, step in sorted(by_budget.items(), key=lambda item: item[1])}
            return cls("trunk", budget_steps, 0, max(forks), forks)
        expected = fork_steps({config.budget_value: budget_steps}, config.decay_fraction, warmup_steps)
        if config.fork_step != expected[config.budget_value]:
            raise ConfigError(
                f"fork_step is {config.fork_step}, but budget {config.budget_value:g} ({budget_steps} steps) with "
                f"decay_fraction {config.decay_fraction} forks at step "
                f"{fork_step(budget_steps, config.decay_fraction)}; "
                "use the fork its trunk wrote for this budget"
            )
        return cls("branch", budget_steps, config.fork_step, budget_steps)

    @property
    def steps_trained(self) -> int:
        return self.end_step - self.start_step


def trunk_config(base: TrialConfig, budgets: list[float], output_dir: str) -> TrialConfig:
    """The trunk of `budgets` for `base` (a wsd config with warmup_steps set)."""
    return base.replace(
        output_dir=output_dir,
        budget_value=max(budgets),
        fork_budgets=tuple(budgets),
        fork_path=None,
        fork_sha256=None,
        fork_step=None,
    )


def branch_config(trunk: TrialConfig, fork: Fork, output_dir: str, **cooldown: Any) -> TrialConfig:
    """The branch of `fork`'s budget; `cooldown` may set decay_shape or final_lr_fraction."""
    return trunk.replace(
        output_dir=output_dir,
        budget_value=fork.budget_value,
        fork_budgets=(),
        fork_path=fork.path,
        fork_sha256=fork.sha256,
        fork_step=fork.step,
        **cooldown,
    )


def fork_file(output_dir: str | os.PathLike[str], step: int) -> Path:
    return Path(output_dir) / FORKS_DIR / f"step_{step:0{FORK_STEP_DIGITS}d}.pt"


def _record_file(path: Path) -> Path:
    return path.with_suffix(".json")


def write_fork(output_dir: str | os.PathLike[str], budget_value: float, state: dict[str, Any]) -> Fork:
    """Write the state after step `state["step"]` as that step's fork, once: the file appears
    whole or not at all and is never replaced (an existing one is a CheckpointError)."""
    step = int(state["step"])
    path = fork_file(output_dir, step)
    if path.exists():  # checked first: its record must not be touched either
        raise CheckpointError(f"fork {path} already exists; a fork is written once and never replaced")
    temporary = write_temporary_checkpoint(path, {**state, "fork_step": step})
    try:
        fork = Fork(step, float(budget_value), str(path.absolute()), file_sha256(temporary))
        # the record first: a fork file that exists always has its hash beside it
        atomic_write_json(_record_file(path), {**fork.to_dict(), "trial_config": state["trial_config"]})
        os.chmod(temporary, 0o444)
        try:
            os.link(temporary, path)  # creates `path` only where none exists: never an overwrite
        except FileExistsError:
            raise CheckpointError(
                f"fork {path} appeared while this trunk wrote it: two trunks share one output_dir; give each its own"
            ) from None
    finally:
        temporary.unlink(missing_ok=True)
    return fork


def read_forks(output_dir: str | os.PathLike[str], trial_config: dict[str, Any] | None = None) -> list[Fork]:
    """The forks a trunk in `output_dir` has written, in step order. With `trial_config`
    (the trunk's `to_dict()`), a fork written by a trunk of another config is a TrialError."""
    forks = []
    for path in sorted((Path(output_dir) / FORKS_DIR).glob("step_*.pt")):
        if not _record_file(path).is_file():
            raise CheckpointError(
                f"fork {path} has no record {_record_file(path).name} (its hash and trunk "
                "config); a fork without one cannot be checked: delete the fork, and its "
                "trunk writes it again"
            )
        record = json.loads(_record_file(path).read_text(encoding="utf-8"))
        if trial_config is not None:
            differing = differing_fields(record["trial_config"], trial_config, RESUME_FREE_FIELDS)
            if differing:
                raise TrialError(
                    f"fork {path} was written by a trunk with different {differing}; use another "
                    "output_dir, or delete its forks/ once no branch needs them"
                )
        # the path where the file is now, absolute: a branch may run in another directory
        forks.append(Fork.from_dict({**record, "path": str(path.absolute())}))
    return forks


def load_fork(config: TrialConfig) -> dict[str, Any]:
    """The state of a branch's fork, checked: its hash (before reading it as a checkpoint), its
    step, and that the trunk's config agrees with the branch's (ConfigError naming fields)."""
    path = Path(config.fork_path)
    if not path.is_file():
        raise CheckpointError(
            f"fork checkpoint {path} does not exist (fork_path); a fork must be kept until "
            "every branch of it has finished: rerun its trunk to write it again"
        )
    actual = file_sha256(path)
    if actual != config.fork_sha256:
        raise CheckpointError(
            f"fork checkpoint {path} has sha256 {actual}, but the branch expects {config.fork_sha256} "
            "(fork_sha256): the file changed after its trunk wrote it, or fork_sha256 names another fork. "
            "Do not train from it: take the hash from the trunk's forks/*.json, or delete the fork and its "
            ".json and rerun the trunk to write it again"
        )
    state = load_checkpoint(path)
    if state.get("fork_step") != config.fork_step:
        raise CheckpointError(
            f"{path} holds the fork of step {state.get('fork_step')} (None: not a fork), but the "
            f"branch's fork_step is {config.fork_step}; use the fork of that step"
        )
    differing = differing_fields(state["trial_config"], config.to_dict(), RESUME_FREE_FIELDS + BRANCH_FREE_FIELDS)
    if differing:
        raise ConfigError(
            f"the branch differs from the trunk that wrote {path} in {differing}; a branch may "
            f"change only {list(BRANCH_FREE_FIELDS)} and execution choices: build it with branch_config"
        )
    return state


def delete_fork(fork: Fork) -> None:
    """Remove a fork and its record (once every branch of it has finished)."""
    path = Path(fork.path)
    path.unlink(missing_ok=True)
    _record_file(path).unlink(missing_ok=True)
