"""When a branch may start and when its fork may go: the driver's side of cooldown branches.

A branch starts as soon as its trunk has written the fork of its budget, while the trunk trains
on (var_model/training/forks.py is the trainer's contract). The driver learns of forks from the
trunk itself: the fork files it writes on the study's shared storage, which the launch loop
polls (`BranchScheduler.poll`, one small directory read per trunk and poll; the loop already
wakes every `poll_seconds` for `ray.wait`). Why not Ray task dependencies (a branch task taking
its fork as an ObjectRef): a trunk is one trial that trains through all its fork points in one
process, and its budgets are fixed at its start. Ray dependencies would need one task per fork
segment, so the trunk would stop and restart at every fork, paying model build, checkpoint
reload and (on a GPU) compilation each time, and a relaunch would have to rebuild the task
graph. The fork files are what a branch loads anyway: written whole, with the hash record
before the fork appears, on storage every node shares, and they outlive a killed trunk, a
killed driver and a relaunch. So a relaunch finds the forks already written the same way, and
a trunk Ray retries after a kill goes on writing the later ones.

A fork is kept until every branch of it has finished, and until its trunk has: a trunk that is
still running (or will be retried) reads its forks at every start, and a fork removed from
under it would be written again. So `poll` and `trial_ended` delete a fork once its trunk and
all its branches are finished (completed or diverged). The disk cost is one checkpoint per
budget per running trunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analysis import mlflow_schema as schema
from orchestration.study.branches import BRANCH, TRUNK
from orchestration.study.spec import StudySpec
from orchestration.study.trial_config import build_trial_config, trial_output_dir
from orchestration.study.trials import TrialSpec
from var_model.errors import CheckpointError, TrialError
from var_model.training.forks import Fork, delete_fork, read_forks


@dataclass(frozen=True)
class WaitingBranch:
    """A branch and the fork it needs: the step of the fork its trunk writes."""

    key: str
    trunk_key: str
    fork_step: int


@dataclass
class BranchScheduler:
    """The branches of a launch that wait for their forks, and the forks still needed.

    trunk_dirs: trunk key -> its output_dir (where its forks/ are); branches: every branch of
    the study (finished or not); finished: key -> status of the trunks and branches that need
    not run (completed or diverged in an earlier launch); trunk_configs: trunk key -> its
    TrialConfig.to_dict(), so that forks left by a trunk of another config are refused
    (var_model.training.forks.read_forks)."""

    trunk_dirs: dict[str, str]
    branches: list[WaitingBranch]
    finished: dict[str, str] = field(default_factory=dict)
    trunk_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    waiting: dict[str, WaitingBranch] = field(init=False)
    problems: dict[str, str] = field(init=False, default_factory=dict)  # trunk key -> why its forks are unreadable
    deleted: list[Fork] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        unknown = sorted({branch.trunk_key for branch in self.branches} - set(self.trunk_dirs))
        assert not unknown, f"branches of trunks {unknown} that the launch does not know"
        self.finished = dict(self.finished)
        self.waiting = {branch.key: branch for branch in self.branches if branch.key not in self.finished}

    def _forks(self, trunk_key: str) -> list[Fork]:
        try:
            return read_forks(self.trunk_dirs[trunk_key], self.trunk_configs.get(trunk_key))
        except (CheckpointError, TrialError) as error:
            self.problems[trunk_key] = str(error)
            return []

    def poll(self) -> dict[str, Fork]:
        """The branches whose fork now exists (branch key -> its Fork), each returned once, and
        forks no longer needed deleted."""
        released: dict[str, Fork] = {}
        for trunk_key in sorted({branch.trunk_key for branch in self.waiting.values()}):
            by_step = {fork.step: fork for fork in self._forks(trunk_key)}
            for branch in [branch for branch in self.waiting.values() if branch.trunk_key == trunk_key]:
                if branch.fork_step in by_step:
                    released[branch.key] = by_step[branch.fork_step]
                    del self.waiting[branch.key]
        self._delete_unneeded()
        return released

    def trial_ended(self, key: str, status: str) -> None:
        """A trunk or branch task ended with `status`; a finished one (completed or diverged)
        never runs again, so the forks only it needed can go."""
        if status in schema.FINISHED_STATUSES:
            self.finished[key] = status
            self._delete_unneeded()

    def stranded(self, active: set[str]) -> dict[str, str]:
        """Waiting branches whose trunk is not in `active` (pending or running) and so will write
        no more forks: branch key -> why. Call it after `poll`, so that forks a trunk wrote before
        it ended are seen first. They are no longer waiting once returned."""
        stranded = {}
        for branch in list(self.waiting.values()):
            if branch.trunk_key in active:
                continue
            if branch.trunk_key in self.problems:
                why = f"the forks of its trunk {branch.trunk_key} cannot be used: {self.problems[branch.trunk_key]}"
            elif self.finished.get(branch.trunk_key) == schema.DIVERGED:
                why = f"its trunk {branch.trunk_key} diverged before the fork of step {branch.fork_step}"
            elif branch.trunk_key in self.finished:
                why = (
                    f"its trunk {branch.trunk_key} has finished, but its fork of step {branch.fork_step} is missing "
                    f"from {self.trunk_dirs[branch.trunk_key]}/forks (deleted by hand?); delete the trunk's "
                    "checkpoint.pt, checkpoint.previous.pt and its MLflow run, then relaunch to train it again"
                )
            else:
                why = (
                    f"its trunk {branch.trunk_key} stopped before writing the fork of step {branch.fork_step}; "
                    "relaunch to resume the trunk, and the branch starts once its fork exists"
                )
            stranded[branch.key] = why
            del self.waiting[branch.key]
        return stranded

    def _delete_unneeded(self) -> None:
        for trunk_key in sorted(set(self.trunk_dirs) & self.finished.keys()):
            needed = {branch.fork_step for branch in self.branches if branch.trunk_key == trunk_key}
            unfinished = {
                branch.fork_step
                for branch in self.branches
                if branch.trunk_key == trunk_key and branch.key not in self.finished
            }
            for fork in self._forks(trunk_key):
                # a fork of a step no branch of this launch uses is left alone: it is not ours to judge
                if fork.step in needed and fork.step not in unfinished:
                    delete_fork(fork)
                    self.deleted.append(fork)


def study_scheduler(
    spec: StudySpec, trials: list[TrialSpec], finished: dict[str, str], token_cache: str
) -> BranchScheduler:
    """The scheduler of a study's branches (none under budgets.strategy independent)."""
    trunks = [trial for trial in trials if trial.role == TRUNK]
    return BranchScheduler(
        {trunk.key: trial_output_dir(spec, trunk) for trunk in trunks},
        [
            WaitingBranch(trial.key, trial.branching.trunk_key, trial.branching.fork_step)
            for trial in trials
            if trial.role == BRANCH
        ],
        finished,
        {trunk.key: build_trial_config(spec, trunk, token_cache).to_dict() for trunk in trunks},
    )
