"""The driver's side of cooldown branches (orchestration.execution.branch_scheduling): a branch is
released once its trunk's fork file exists, and a fork is deleted only once its trunk and every
branch of it have finished. Forks here are real fork files (var_model.training.forks.write_fork)."""

from pathlib import Path

from analysis import mlflow_schema as schema
from orchestration.execution.branch_scheduling import BranchScheduler, WaitingBranch
from var_model.training.forks import fork_file, read_forks, write_fork

TRUNK_CONFIG = {"schedule": "wsd", "fork_budgets": [16.0, 32.0]}


def fork_state(step: int, config: dict = TRUNK_CONFIG) -> dict:
    return {
        "step": step,
        "model": {},
        "optimizer": {},
        "schedule": {},
        "rng": {},
        "data_position": 0,
        "trial_config": config,
    }


def scheduler(tmp_path: Path, finished: dict | None = None, configs: dict | None = None) -> BranchScheduler:
    branches = [WaitingBranch("d1-b16-s0", "d1-trunk-s0", 2), WaitingBranch("d1-b32-s0", "d1-trunk-s0", 3)]
    return BranchScheduler({"d1-trunk-s0": str(tmp_path / "trunk")}, branches, finished or {}, configs or {})


def test_a_branch_is_released_once_when_its_fork_appears(tmp_path):
    branches = scheduler(tmp_path)
    assert branches.poll() == {} and set(branches.waiting) == {"d1-b16-s0", "d1-b32-s0"}
    first = write_fork(tmp_path / "trunk", 16.0, fork_state(2))
    assert branches.poll() == {"d1-b16-s0": first}
    assert branches.poll() == {}  # released once
    second = write_fork(tmp_path / "trunk", 32.0, fork_state(3))
    assert branches.poll() == {"d1-b32-s0": second} and branches.waiting == {}


def test_a_fork_is_kept_until_its_trunk_and_its_branch_have_finished(tmp_path):
    branches = scheduler(tmp_path)
    first = write_fork(tmp_path / "trunk", 16.0, fork_state(2))
    branches.poll()
    branches.trial_ended("d1-b16-s0", schema.COMPLETED)
    # the trunk still runs (and reads its forks again if Ray retries it): the fork stays
    assert Path(first.path).is_file()
    second = write_fork(tmp_path / "trunk", 32.0, fork_state(3))
    branches.poll()
    branches.trial_ended("d1-trunk-s0", schema.COMPLETED)
    # the first fork's only branch has finished; the second's still runs
    assert not Path(first.path).exists() and not Path(first.path).with_suffix(".json").exists()
    assert Path(second.path).is_file() and branches.deleted == [first]
    branches.trial_ended("d1-b32-s0", schema.FAILED)  # a failed branch is resumed on relaunch: keep its fork
    assert Path(second.path).is_file()
    branches.trial_ended("d1-b32-s0", schema.DIVERGED)
    assert read_forks(tmp_path / "trunk") == [] and branches.deleted == [first, second]


def test_a_relaunch_releases_forks_written_earlier_and_deletes_those_no_longer_needed(tmp_path):
    write_fork(tmp_path / "trunk", 16.0, fork_state(2))
    kept = write_fork(tmp_path / "trunk", 32.0, fork_state(3))
    finished = {"d1-trunk-s0": schema.COMPLETED, "d1-b16-s0": schema.COMPLETED}
    branches = scheduler(tmp_path, finished)
    assert set(branches.waiting) == {"d1-b32-s0"}
    assert branches.poll() == {"d1-b32-s0": kept}
    assert read_forks(tmp_path / "trunk") == [kept]


def test_branches_of_a_trunk_that_stopped_are_stranded_with_the_reason(tmp_path):
    branches = scheduler(tmp_path)
    write_fork(tmp_path / "trunk", 16.0, fork_state(2))
    assert set(branches.poll()) == {"d1-b16-s0"}
    assert branches.stranded({"d1-trunk-s0"}) == {}  # its trunk still runs: it waits
    branches.trial_ended("d1-trunk-s0", schema.FAILED)
    (why,) = branches.stranded(set()).values()
    assert "trunk d1-trunk-s0 stopped before writing the fork of step 3" in why and "relaunch" in why
    assert branches.waiting == {}


def test_a_finished_trunk_without_the_fork_or_a_diverged_one_says_which(tmp_path):
    branches = scheduler(tmp_path, {"d1-trunk-s0": schema.COMPLETED})
    branches.poll()
    stranded = branches.stranded(set())
    assert set(stranded) == {"d1-b16-s0", "d1-b32-s0"}
    assert "has finished, but its fork of step 2 is missing" in stranded["d1-b16-s0"]
    diverged = scheduler(tmp_path, {"d1-trunk-s0": schema.DIVERGED})
    diverged.poll()
    assert diverged.stranded(set())["d1-b32-s0"] == "its trunk d1-trunk-s0 diverged before the fork of step 3"


def test_forks_of_a_trunk_of_another_config_are_never_used(tmp_path):
    write_fork(tmp_path / "trunk", 16.0, fork_state(2, {**TRUNK_CONFIG, "seed": 1}))
    branches = scheduler(tmp_path, configs={"d1-trunk-s0": {**TRUNK_CONFIG, "seed": 0}})
    assert branches.poll() == {}
    why = branches.stranded(set())["d1-b16-s0"]
    assert why.startswith("the forks of its trunk d1-trunk-s0 cannot be used: fork ") and "['seed']" in why
    assert fork_file(tmp_path / "trunk", 2).is_file()  # refused, not deleted
