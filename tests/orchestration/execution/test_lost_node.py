"""Lost nodes: a node removed from the running simulated cluster mid-trial (its raylet and
workers killed, as a preempted machine's are). A trial is resubmitted by Ray and resumes from
its checkpoint on another node, in its own MLflow run, and the study completes with every
trial exactly once. (A trial over several nodes that loses one: test_multi_node.py.) Nodes are
added to the session's cluster for the test and removed after it (only what the test added)."""

import json
import os
import threading
import time
from pathlib import Path

import psutil
import pytest
from fake_trial import SlowTrial, fake_tokenizer_stage
from mlflow.tracking import MlflowClient

from analysis.mlflow_schema import ATTEMPTS_TAG, KIND_TAG, RESUMED_STEP_TAG, STATUS_TAG, TRIAL_KEY_TAG
from orchestration.execution.launcher import launch
from orchestration.study.loading import load_study

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")


def wait_for(condition, seconds: float = 180.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {condition.__doc__}")


def checkpointed_step(path: Path) -> int:
    try:
        return json.loads(path.read_text())["step"]
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def hosting_node(nodes: list, pid: int):
    """The node (of `nodes`) whose raylet started the worker `pid`."""
    ancestors = {parent.pid for parent in psutil.Process(pid).parents()}
    return next(node for node in nodes if node.all_processes["raylet"][0].process.pid in ancestors)


@pytest.mark.slow
def test_a_trial_on_a_lost_node_resumes_on_another_in_its_run_and_the_study_runs_each_trial_once(ray_cluster, tmp_path):
    # Only the two added nodes offer `lost_node_test`: the depth-1 trial starts on one of them
    # and, once that node is gone, can only resume on the other; the depth-2 trial runs anywhere.
    # (Nodes are added here, in the main thread: Ray's Node registers signal handlers.)
    added = [ray_cluster.add_node(num_cpus=1, resources={"lost_node_test": 1}) for _ in range(2)]
    spec = load_study(
        TINY, [f"storage={tmp_path}", "budgets.values=[1600]", "resources.custom={lost_node_test: {1: 1, 2: 0}}"]
    )
    trial_folder = Path(spec.storage, "trials", "d1-b1600-s0")
    checkpoint = trial_folder / "checkpoint.json"
    removed_at, spares = [], []

    def lose_the_trials_node():
        wait_for(lambda: checkpointed_step(checkpoint) >= 3)
        host = hosting_node(added, int((trial_folder / "pid").read_text()))
        spares.extend(node for node in added if node is not host)
        removed_at.append(checkpointed_step(checkpoint))
        ray_cluster.remove_node(host, allow_graceful=False)
        added.remove(host)

    watcher = threading.Thread(target=lose_the_trials_node)
    watcher.start()
    try:
        with open(os.devnull, "w") as stream:
            result = launch(spec, stream=stream, trial_function=SlowTrial(0.2), tokenizer_function=fake_tokenizer_stage)
        watcher.join()
    finally:
        for node in added:  # what this test added and did not lose
            ray_cluster.remove_node(node)
    assert removed_at and removed_at[0] < 200, "the node was removed after the trial finished"
    (spare,) = spares
    assert result.ok and result.statuses == {"d1-b1600-s0": "completed", "d2-b1600-s0": "completed"}
    assert result.results["d1-b1600-s0"]["node_id"] == spare.node_id
    client = MlflowClient(spec.tracking_uri)
    experiment = client.get_experiment_by_name(spec.name)
    children = [
        run
        for run in client.search_runs([experiment.experiment_id], max_results=100)
        if run.data.tags.get(KIND_TAG) == "trial"
    ]
    assert sorted(run.data.tags[TRIAL_KEY_TAG] for run in children) == ["d1-b1600-s0", "d2-b1600-s0"]
    (moved,) = [run for run in children if run.data.tags[TRIAL_KEY_TAG] == "d1-b1600-s0"]
    assert moved.data.tags[ATTEMPTS_TAG] == "2" and moved.data.tags[STATUS_TAG] == "completed"
    assert int(moved.data.tags[RESUMED_STEP_TAG]) >= removed_at[0] - 1
