"""A trial with more GPUs than a node has runs over several nodes: on the simulated two-node
cluster (gloo on CPU, the `fake_gpu` custom resource standing in for GPUs), one rank lands on
each node and the trial ends with the weights of one process training the same global batch.
A group that loses a node (removed from the running cluster) restarts whole, from its
checkpoint, on the nodes still free: nodes added for that test and removed after it."""

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import ray
import torch
from mlflow.tracking import MlflowClient

from analysis.mlflow_schema import CHECKPOINT_STEP_TAG, RESUMED_STEP_TAG, STATUS_TAG, TRIAL_CONFIG_FILE
from orchestration.execution.multi_node import NODE_GROUP_FILE, _bundle_resources, _rendezvous, execute_multi_node
from orchestration.execution.ray_runtime import NodeGroup, node_group
from orchestration.execution.tokenizer_task import run_tokenizer_stage
from orchestration.execution.torchrun import Rendezvous, torchrun_command, with_parent_death_signal
from orchestration.execution.trial_task import TrialRequest
from orchestration.study.loading import load_study
from orchestration.study.trial_config import build_trial_config
from orchestration.study.trials import expand
from orchestration.tracking.study_runs import StudyTracker, git_revision
from var_model.training import run_trial
from var_model.training.checkpoint import CHECKPOINT_FILE, load_checkpoint

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")
# class dropout and drop-path draw per rank and batch shape: off where weights are compared
NO_RANDOM_DRAWS = {"class_dropout": 0.0, "drop_path_rate": 0.0}


def two_node_trial(tmp_path, budget: int = 32, checkpoint_every: int = 1):
    """A depth-1 trial of batch 8 (4 images per rank on 2 ranks), its run and its request."""
    spec = load_study(TINY, [f"storage={tmp_path}", "model.depths=[1]", f"budgets.values=[{budget}]"])
    (trial,) = expand(spec)
    cache = run_tokenizer_stage(spec)["cache_path"]
    tracker = StudyTracker(spec)
    tracker.start_parent()
    run_id = tracker.create_trial_run(trial, git_revision())
    config = build_trial_config(spec, trial, cache)
    config = config.replace(
        model={**config.model, **NO_RANDOM_DRAWS}, sample_grid=False, device="cpu", checkpoint_every=checkpoint_every
    )
    request = TrialRequest(
        key=trial.key,
        run_id=run_id,
        tracking_uri=spec.tracking_uri,
        output_dir=config.output_dir,
        threads=1,
        trial_config=config,
        gpus=2,
    )
    return spec, trial, request


def weights(directory: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(Path(directory) / CHECKPOINT_FILE)["model"]


def assert_same_weights(directory: str, reference: str) -> None:
    first, second = weights(directory), weights(reference)
    assert first.keys() == second.keys()
    for name, tensor in second.items():
        torch.testing.assert_close(first[name], tensor, rtol=0, atol=1e-5, msg=name)


@pytest.mark.slow
def test_two_torchrun_nodes_rendezvous_on_the_first_and_match_one_process(tmp_path):
    # The commands each bundle runs, without Ray: node ranks 0 and 1 meet at the first's port.
    spec, _, request = two_node_trial(tmp_path)
    config_path = str(Path(request.output_dir, TRIAL_CONFIG_FILE))
    Path(request.output_dir).mkdir(parents=True, exist_ok=True)
    request.trial_config.to_yaml(config_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = dict(os.environ, MLFLOW_TRACKING_URI=spec.tracking_uri, OMP_NUM_THREADS="1")
    nodes = [
        subprocess.Popen(
            with_parent_death_signal(torchrun_command(request, config_path, Rendezvous(2, rank, 1, "127.0.0.1", port))),
            env=environment,
        )
        for rank in range(2)
    ]
    assert [node.wait(timeout=600) for node in nodes] == [0, 0]
    run_trial(request.trial_config.replace(output_dir=str(tmp_path / "single")), resume=False)
    assert_same_weights(request.output_dir, str(tmp_path / "single"))
    run = MlflowClient(spec.tracking_uri).get_run(request.run_id)
    assert run.data.params["world_size"] == "2"


@pytest.mark.slow
def test_two_node_trial_places_a_rank_on_each_node_and_matches_one_process(ray_cluster, tmp_path):
    spec, trial, request = two_node_trial(tmp_path)
    nodes = [{"CPU": 2.0, "fake_gpu": 1.0}] * 2
    group = node_group({"CPU": 2.0, "fake_gpu": 2.0}, nodes, accelerator="fake_gpu")
    assert group.nodes == 2 and group.gpus_per_node == 1

    outcome = execute_multi_node(request, group)

    assert outcome["status"] == "completed"
    (attempt,) = json.loads(Path(request.output_dir, NODE_GROUP_FILE).read_text())["attempts"]
    cluster_nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert len(set(attempt["node_ids"])) == 2 and set(attempt["node_ids"]) <= cluster_nodes
    run = MlflowClient(spec.tracking_uri).get_run(request.run_id)
    assert run.data.params["world_size"] == "2" and run.data.tags["varscale.status"] == "completed"

    single = run_trial(request.trial_config.replace(output_dir=str(tmp_path / "single")), resume=False)
    assert single.status == "completed"
    assert_same_weights(request.output_dir, str(tmp_path / "single"))


def wait_for(condition, seconds: float = 300.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds:.0f} s")


@pytest.mark.slow
def test_a_group_that_loses_a_node_restarts_whole_from_its_checkpoint_on_free_nodes(ray_cluster, tmp_path):
    # Three added nodes, one `group_gpu` each: the two-node group starts on two of them and,
    # when one is lost, restarts on the survivor and the spare.
    added = [ray_cluster.add_node(num_cpus=1, resources={"group_gpu": 1}) for _ in range(3)]
    try:
        spec, _, request = two_node_trial(tmp_path, budget=8 * 400, checkpoint_every=20)
        group = NodeGroup(2, {"CPU": 1.0, "group_gpu": 1.0}, accelerator="group_gpu")
        record = Path(request.output_dir, NODE_GROUP_FILE)
        lost = []

        client = MlflowClient(spec.tracking_uri)

        def checkpointed():
            return int(client.get_run(request.run_id).data.tags.get(CHECKPOINT_STEP_TAG, "0"))

        def lose_a_node_of_the_group():
            wait_for(lambda: checkpointed() >= 20)  # rank 0's tag, set once the checkpoint is written
            placed = json.loads(record.read_text())["attempts"][0]["node_ids"]
            victim = next(node for node in added if node.node_id == placed[1])  # not the rendezvous node
            lost.append(victim.node_id)
            ray_cluster.remove_node(victim, allow_graceful=False)
            added.remove(victim)

        watcher = threading.Thread(target=lose_a_node_of_the_group)
        watcher.start()
        outcome = execute_multi_node(request, group)
        watcher.join()
    finally:
        for node in added:
            ray_cluster.remove_node(node)
    assert outcome["status"] == "completed"
    attempts = json.loads(record.read_text())["attempts"]
    assert [attempt["outcome"] for attempt in attempts] == ["lost node", "completed"]
    assert lost[0] in attempts[0]["node_ids"] and lost[0] not in attempts[1]["node_ids"]
    run = MlflowClient(spec.tracking_uri).get_run(request.run_id)
    assert run.data.tags[STATUS_TAG] == "completed" and int(run.data.tags[RESUMED_STEP_TAG]) >= 20


def test_each_node_of_a_group_gets_its_whole_bundle_and_one_rank_per_gpu():
    group = NodeGroup(4, {"CPU": 8.0, "GPU": 8.0, "h100": 8.0})
    assert _bundle_resources(group) == {"num_cpus": 8.0, "num_gpus": 8.0, "resources": {"h100": 8.0}, "max_retries": 0}
    rendezvous = _rendezvous(group, 3, {"address": "10.0.0.5", "port": 29400})
    assert (rendezvous.nodes, rendezvous.node_rank, rendezvous.processes_per_node) == (4, 3, 8)
    assert (rendezvous.master_address, rendezvous.master_port) == ("10.0.0.5", 29400)
