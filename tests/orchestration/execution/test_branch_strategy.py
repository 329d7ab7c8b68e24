"""`budgets.strategy: branches` on the shared simulated Ray cluster, with a fast trial function
that honours the trunk/branch contract (tests/orchestration/branch_fake_trial.py): branches
start from their forks while the trunk trains, and the faults of issue 12 (a killed trunk, a
killed branch, a relaunch) each end with every trial exactly once in MLflow, nothing retrained
that had finished, and the forks deleted once nothing needs them."""

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import branch_fake_trial
import pytest
from branch_fake_trial import BranchingTrial
from fake_trial import fake_tokenizer_stage
from mlflow.tracking import MlflowClient

from analysis import mlflow_schema as schema
from orchestration.execution.launcher import launch
from orchestration.study.loading import load_study
from orchestration.study.trial_config import plan_study
from var_model.errors import ConfigError
from var_model.training.forks import read_forks

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")
# depth 1, budgets of 2, 4, 6, 8 steps, forks at steps 1, 2, 3, 4: the trunk trains 4 steps
BRANCHES = [
    "model.depths=[1]",
    "budgets.strategy=branches",
    "recipe.schedule=wsd",
    "recipe.decay_fraction=0.5",
    "budgets.values=[16, 32, 48, 64]",
]
KEYS = ["d1-trunk-s0", "d1-b16-s0", "d1-b32-s0", "d1-b48-s0", "d1-b64-s0"]
TRAINED = {
    "d1-trunk-s0": [1, 2, 3, 4],
    "d1-b16-s0": [2],
    "d1-b32-s0": [3, 4],
    "d1-b48-s0": [4, 5, 6],
    "d1-b64-s0": [5, 6, 7, 8],
}


@pytest.fixture(autouse=True)
def ship_the_fake_trial_to_workers(ray_cluster):
    from ray import cloudpickle  # Ray pickles with its vendored copy

    cloudpickle.register_pickle_by_value(sys.modules[branch_fake_trial.__name__])


def branches_spec(tmp_path):
    return load_study(TINY, [f"storage={tmp_path}", *BRANCHES])


def quiet_launch(spec, trial_function):
    with open(os.devnull, "w") as stream:
        return launch(
            spec,
            stream=stream,
            tokenizer_function=fake_tokenizer_stage,
            trial_function=trial_function,
            poll_seconds=0.1,
        )


def trial_runs(spec) -> dict:
    client = MlflowClient(spec.tracking_uri)
    experiment = client.get_experiment_by_name(spec.name)
    runs = client.search_runs([experiment.experiment_id], f"tags.`{schema.KIND_TAG}` = '{schema.TRIAL_KIND}'")
    keys = [run.data.tags[schema.TRIAL_KEY_TAG] for run in runs]
    assert sorted(keys) == sorted(KEYS), f"every trial exactly once in MLflow, got {keys}"
    return {run.data.tags[schema.TRIAL_KEY_TAG]: run for run in runs}


def trained_steps(spec, key) -> list[int]:
    return [int(line) for line in Path(spec.storage, "trials", key, "steps.log").read_text().split()]


def trunk_folder(spec) -> Path:
    return Path(spec.storage, "trials", "d1-trunk-s0")


def kill_when(condition, directory: Path, killed: list) -> None:
    """SIGKILL the trial in `directory` once condition() holds (within 120 s)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if condition():
                pid = int((directory / "pid").read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.02)


def checkpointed(directory: Path, step: int):
    return lambda: json.loads((directory / "checkpoint.json").read_text())["step"] >= step


def trunk_step_when_submitted(spec, branch_key: str, seen: list) -> None:
    """The trunk's checkpointed step (0: none yet; it writes a fork just before that step's
    checkpoint) when the launch submits `branch_key`, which it does just after writing the
    branch's trial_config.yaml."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not seen:
        if Path(spec.storage, "trials", branch_key, schema.TRIAL_CONFIG_FILE).exists():
            checkpoint = trunk_folder(spec) / "checkpoint.json"
            seen.append(json.loads(checkpoint.read_text())["step"] if checkpoint.exists() else 0)
        time.sleep(0.01)


def test_branches_start_from_their_forks_while_the_trunk_trains_each_once(tmp_path):
    spec = branches_spec(tmp_path)
    seen: list[int] = []
    watcher = threading.Thread(target=trunk_step_when_submitted, args=(spec, "d1-b16-s0", seen))
    watcher.start()
    result = quiet_launch(spec, BranchingTrial({"trunk": 1.5}))
    watcher.join()
    assert result.ok and result.statuses == dict.fromkeys(KEYS, "completed") | result.statuses
    assert sorted(result.statuses) == sorted(KEYS)
    runs = trial_runs(spec)
    trunk = runs["d1-trunk-s0"].data.tags
    assert (trunk[schema.ROLE_TAG], trunk[schema.TRUNK_KEY_TAG], trunk[schema.FORKS_WRITTEN_TAG]) == (
        "trunk",
        "d1-trunk-s0",
        "1,2,3,4",
    )
    for key, fork in (("d1-b16-s0", 1), ("d1-b32-s0", 2), ("d1-b48-s0", 3), ("d1-b64-s0", 4)):
        tags = runs[key].data.tags
        assert (tags[schema.ROLE_TAG], tags[schema.TRUNK_KEY_TAG], tags[schema.FORK_STEP_TAG]) == (
            "branch",
            "d1-trunk-s0",
            str(fork),
        )
        assert runs[key].data.metrics[schema.logged_metric_name("final_images")] == 8 * (
            2 * fork
        )  # the whole budget, counted from step 0
    assert {key: trained_steps(spec, key) for key in KEYS} == TRAINED
    # the first branch was submitted once its fork existed, while its trunk had steps left to train
    assert seen and seen[0] < 4
    assert read_forks(trunk_folder(spec)) == []  # every branch and the trunk finished: no fork kept
    parent = MlflowClient(spec.tracking_uri).get_run(runs["d1-trunk-s0"].data.tags[schema.PARENT_RUN_TAG])
    assert parent.data.tags[schema.STRATEGY_TAG] == "branches"


@pytest.mark.slow
def test_a_killed_trunk_resumes_and_the_branches_already_forked_go_on(tmp_path):
    spec = branches_spec(tmp_path)
    killed: list[int] = []
    forks = trunk_folder(spec) / "forks"
    watcher = threading.Thread(
        target=kill_when, args=(lambda: (forks / "step_000000002.pt").exists(), trunk_folder(spec), killed)
    )
    watcher.start()
    result = quiet_launch(spec, BranchingTrial({"trunk": 1.5, "branch": 0.5}))
    watcher.join()
    assert killed, "the trunk finished before it could be killed"
    assert result.ok and set(result.statuses.values()) == {"completed"}
    runs = trial_runs(spec)
    trunk = runs["d1-trunk-s0"].data.tags
    # the kill lands once fork 2 exists; the trunk writes a fork before that step's checkpoint,
    # so the resume is from step 1 or 2 (never from scratch)
    assert trunk[schema.ATTEMPTS_TAG] == "2" and int(trunk[schema.RESUMED_STEP_TAG]) >= 1
    # the branches of forks 1 and 2 ran once, alongside; the trunk trained no checkpointed step twice
    assert {key: runs[key].data.tags[schema.ATTEMPTS_TAG] for key in KEYS[1:]} == dict.fromkeys(KEYS[1:], "1")
    assert {key: trained_steps(spec, key) for key in KEYS[1:]} == {key: TRAINED[key] for key in KEYS[1:]}
    counts = Counter(trained_steps(spec, "d1-trunk-s0"))
    assert sorted(counts) == [1, 2, 3, 4]
    assert all(counts[step] == 1 for step in range(1, int(trunk[schema.RESUMED_STEP_TAG]) + 1))
    assert trunk[schema.FORKS_WRITTEN_TAG] == "1,2,3,4" and read_forks(trunk_folder(spec)) == []


@pytest.mark.slow
def test_a_killed_branch_resumes_from_its_own_checkpoint(tmp_path):
    spec = branches_spec(tmp_path)
    killed: list[int] = []
    branch = Path(spec.storage, "trials", "d1-b64-s0")
    watcher = threading.Thread(target=kill_when, args=(checkpointed(branch, 6), branch, killed))
    watcher.start()
    result = quiet_launch(spec, BranchingTrial({"branch": 0.7}))
    watcher.join()
    assert killed, "the branch finished before it could be killed"
    assert result.ok and set(result.statuses.values()) == {"completed"}
    runs = trial_runs(spec)
    tags = runs["d1-b64-s0"].data.tags
    assert tags[schema.ATTEMPTS_TAG] == "2" and int(tags[schema.RESUMED_STEP_TAG]) >= 6  # its own, not its fork's 4
    counts = Counter(trained_steps(spec, "d1-b64-s0"))
    assert sorted(counts) == [5, 6, 7, 8] and all(counts[step] == 1 for step in (5, 6))
    assert {key: runs[key].data.tags[schema.ATTEMPTS_TAG] for key in KEYS[:-1]} == dict.fromkeys(KEYS[:-1], "1")
    assert read_forks(trunk_folder(spec)) == []


def test_a_relaunch_runs_only_what_did_not_finish_from_the_forks_kept_for_it(tmp_path):
    spec = branches_spec(tmp_path)
    first = quiet_launch(spec, BranchingTrial(fail_keys=("d1-b48-s0",)))
    assert first.statuses["d1-b48-s0"] == "failed" and "a bug in d1-b48-s0" in first.errors["d1-b48-s0"]
    assert [fork.step for fork in read_forks(trunk_folder(spec))] == [3]  # kept for the unfinished branch only

    second = quiet_launch(spec, BranchingTrial())
    assert second.ok and sorted(second.skipped) == sorted(key for key in KEYS if key != "d1-b48-s0")
    assert second.statuses["d1-b48-s0"] == "completed"
    runs = trial_runs(spec)
    assert runs["d1-b48-s0"].data.tags[schema.ATTEMPTS_TAG] == "2"
    assert {key: runs[key].data.tags[schema.ATTEMPTS_TAG] for key in KEYS if key != "d1-b48-s0"} == dict.fromkeys(
        [key for key in KEYS if key != "d1-b48-s0"], "1"
    )
    assert {key: trained_steps(spec, key) for key in KEYS} == TRAINED  # nothing finished was trained again
    assert read_forks(trunk_folder(spec)) == []


def test_branches_of_a_failed_trunk_fail_with_the_reason_and_a_relaunch_finishes_them(tmp_path):
    spec = branches_spec(tmp_path)
    first = quiet_launch(spec, BranchingTrial(fail_keys=("d1-trunk-s0",)))
    assert set(first.statuses.values()) == {"failed"}
    assert "trunk d1-trunk-s0 stopped before writing the fork of step 1" in first.errors["d1-b16-s0"]
    runs = trial_runs(spec)
    assert runs["d1-b16-s0"].data.tags[schema.STATUS_TAG] == "failed"
    second = quiet_launch(spec, BranchingTrial())
    assert second.ok and set(second.statuses.values()) == {"completed"}
    trial_runs(spec)


def test_a_study_that_changes_strategy_in_place_is_refused(tmp_path):
    independent = load_study(TINY, [f"storage={tmp_path}", "model.depths=[1]", "budgets.values=[16, 32, 48, 64]"])
    assert quiet_launch(independent, BranchingTrial()).ok
    with pytest.raises(
        ConfigError,
        match=r"^budgets.strategy: trial d1-b16-s0 of study tiny_test ran as "
        r"'independent', but budgets.strategy branches makes it a branch",
    ):
        quiet_launch(branches_spec(tmp_path), BranchingTrial())
    assert [trial.key for trial in plan_study(branches_spec(tmp_path))] == KEYS


@pytest.mark.slow
def test_real_branches_launched_by_the_study_equal_the_independent_wsd_runs(tmp_path):
    # the real tokenizer stage and trainer: the driver's trunk and branch TrialConfigs agree as the
    # trainer checks (hash, step, fields), and each branch ends where its independent wsd run ends
    shared = ["recipe.warmup_steps=0", "trial.sample_grid=false", "trial.eval_every=0"]
    branches = load_study(TINY, [f"storage={tmp_path / 'branches'}", *BRANCHES, *shared])
    independent = load_study(
        TINY,
        [f"storage={tmp_path / 'independent'}", "name=tiny_independent", *BRANCHES[:1], *BRANCHES[2:], *shared],
    )
    with open(os.devnull, "w") as stream:
        launched = {spec.name: launch(spec, stream=stream, poll_seconds=0.1) for spec in (branches, independent)}
    assert all(result.ok for result in launched.values())
    runs = trial_runs(branches)
    client = MlflowClient(independent.tracking_uri)
    experiment = client.get_experiment_by_name(independent.name)
    trial_filter = f"tags.`{schema.KIND_TAG}` = '{schema.TRIAL_KIND}'"
    alone = {
        run.data.tags[schema.TRIAL_KEY_TAG]: run for run in client.search_runs([experiment.experiment_id], trial_filter)
    }
    for key in KEYS[1:]:
        branch, run = runs[key].data.metrics, alone[key].data.metrics
        loss, images = schema.logged_metric_name("final_test_loss_avg"), schema.logged_metric_name("final_images")
        assert branch[loss] == run[loss], key
        assert branch[images] == run[images]
    assert read_forks(trunk_folder(branches)) == []
