"""A trial with more GPUs than one node has: one torchrun per node, in a Ray placement group.

The launcher's task for such a trial holds no GPUs itself (`launcher._task_options`); it asks
Ray for a placement group of one bundle per node (STRICT_SPREAD: distinct nodes, each bundle
that node's share of the trial's GPUs and CPUs), learns the first bundle's node address and a
free port there, and starts on every bundle `torchrun --nnodes=N --node_rank=i
--nproc_per_node=G --master_addr=... --master_port=...`: one torch.distributed process per GPU,
rendezvous on the first node, rank 0 (on the first node) alone reporting to MLflow and writing
the checkpoint, as on one node (execution.torchrun).

A lost node breaks the whole group (a collective cannot go on without a rank), so the group is
the unit of retry: the surviving nodes' torchruns are stopped, the placement group removed,
and a new one placed on whatever nodes are free; every rank resumes from the last checkpoint
(the trainer's resume, shared storage). A rank's own error (a bug, bad input) is not retried.
Every attempt's nodes are written to `<output_dir>/node_group.json`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field

import ray
from ray.exceptions import RayTaskError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from analysis.mlflow_schema import TRIAL_CONFIG_FILE
from orchestration.execution.ray_runtime import NodeGroup, node_group, node_resources, trial_request
from orchestration.execution.torchrun import (
    Rendezvous,
    execute_data_parallel,
    rank_zero_result,
    torchrun_command,
    with_parent_death_signal,
)
from orchestration.execution.trial_task import TrialRequest, execute_trial
from var_model.errors import TrialError
from var_model.files import atomic_write_json

NODE_GROUP_FILE = "node_group.json"
GROUP_RESTARTS = 2  # after lost nodes; a rank's own error is never retried
PLACEMENT_TIMEOUT_SECONDS = 600.0  # waiting for free nodes, at the start and after a loss
# After the first node's torchrun fails, how long the others get to fail on their own (gloo
# sees a dead peer at once; NCCL may block until its timeout): then they are stopped. The wait
# also lets Ray report the lost node's task as a system failure, which is what decides a retry.
SETTLE_SECONDS = 60.0


def execute_gpu_trial(request: TrialRequest) -> dict:
    """The Ray task of a trial with several GPUs: torchrun on this node when the task holds the
    GPUs, else (the launcher gave it none: the trial spans nodes) a group over several nodes."""
    held = ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)
    if held >= request.gpus:
        return execute_data_parallel(request)
    request_per_trial = {"CPU": float(request.threads), "GPU": float(request.gpus)}
    group = node_group(request_per_trial, node_resources(), request.gpus_per_node, key=request.key)
    return execute_multi_node(request, group)


def execute_multi_node(
    request: TrialRequest,
    group: NodeGroup,
    restarts: int = GROUP_RESTARTS,
    placement_timeout_seconds: float = PLACEMENT_TIMEOUT_SECONDS,
) -> dict:
    """Run one trial over `group.nodes` nodes (MLflow bookkeeping as for any trial)."""
    return execute_trial(request, _run_group(request, group, restarts, placement_timeout_seconds))


@dataclass
class Attempt:
    node_ids: list[str] = field(default_factory=list)
    master: str = ""
    outcome: str = "running"  # completed | lost node | failed
    message: str = ""


def _run_group(request: TrialRequest, group: NodeGroup, restarts: int, placement_timeout_seconds: float):
    def run(config, callback, resume=True):  # the callback is rank 0's to make (torchrun.main)
        config_path = os.path.join(config.output_dir, TRIAL_CONFIG_FILE)
        config.to_yaml(config_path)
        attempts: list[Attempt] = []
        for _ in range(restarts + 1):
            attempt = Attempt()
            attempts.append(attempt)
            _run_placed(request, group, config_path, attempt, placement_timeout_seconds, attempts)
            if attempt.outcome == "completed":
                break
            if attempt.outcome == "failed":
                raise TrialError(f"trial {request.key} over {group.nodes} nodes failed: {attempt.message}")
        else:
            raise TrialError(f"trial {request.key} lost a node in each of its {len(attempts)} attempts; relaunch")
        return rank_zero_result(config.output_dir, f"trial {request.key} over {group.nodes} nodes")

    return run


def _run_placed(
    request: TrialRequest,
    group: NodeGroup,
    config_path: str,
    attempt: Attempt,
    placement_timeout_seconds: float,
    attempts: list[Attempt],
) -> None:
    bundles = [dict(group.per_node) for _ in range(group.nodes)]
    placed = placement_group(bundles, strategy="STRICT_SPREAD", name=f"trial {request.key}")
    try:
        if not placed.wait(placement_timeout_seconds):
            raise TrialError(
                f"trial {request.key}: {group.nodes} nodes with {group.per_node} free each were not available "
                f"within {placement_timeout_seconds:.0f} s"
            )
        places = ray.get([_locate.options(**_in_bundle(placed, index)).remote() for index in range(group.nodes)])
        attempt.node_ids = [place["node_id"] for place in places]
        attempt.master = f"{places[0]['address']}:{places[0]['port']}"
        _write_attempts(request.output_dir, attempts)
        refs = [
            _node_torchrun.options(**{**_in_bundle(placed, index), **_bundle_resources(group)}).remote(
                with_parent_death_signal(torchrun_command(request, config_path, _rendezvous(group, index, places[0]))),
                _environment(request, group),
            )
            for index in range(group.nodes)
        ]
        attempt.outcome, attempt.message = _settle(refs, attempt.node_ids)
    finally:
        remove_placement_group(placed)
        _write_attempts(request.output_dir, attempts)


def _settle(refs: list, node_ids: list[str]) -> tuple[str, str]:
    """Wait for every node's torchrun; a failure gives the others SETTLE_SECONDS, then stops them."""
    pending, errors = list(refs), []
    deadline = None
    while pending:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, pending = ray.wait(pending, num_returns=1, timeout=timeout)
        if not ready:
            break
        try:
            ray.get(ready[0])
        except Exception as error:  # a rank's error, or Ray's word that a node or worker died
            errors.append(error)
            deadline = deadline or time.monotonic() + SETTLE_SECONDS
    for ref in pending:
        ray.cancel(ref, force=True)  # kills the worker; the parent-death signal stops its torchrun
    if not errors:
        return "completed", ""
    alive = {node["NodeID"] for node in ray.nodes() if node.get("Alive")}
    lost = [node_id for node_id in node_ids if node_id not in alive]
    if lost or any(not isinstance(error, RayTaskError) for error in errors):
        return "lost node", f"lost {lost or 'a worker'}: {type(errors[0]).__name__}"
    return "failed", str(errors[0]).strip().splitlines()[-1]


def _rendezvous(group: NodeGroup, index: int, master: dict) -> Rendezvous:
    return Rendezvous(group.nodes, index, group.gpus_per_node, master["address"], master["port"])


def _in_bundle(placed, index: int) -> dict:
    strategy = PlacementGroupSchedulingStrategy(placement_group=placed, placement_group_bundle_index=index)
    return {"scheduling_strategy": strategy, "num_cpus": 0}


def _bundle_resources(group: NodeGroup) -> dict:
    """The whole bundle for its node's torchrun (GPUs as num_gpus, so Ray sets CUDA_VISIBLE_DEVICES)."""
    options: dict = {"num_cpus": group.per_node.get("CPU", 0.0), "max_retries": 0}
    others = {name: amount for name, amount in group.per_node.items() if name not in ("CPU", "GPU")}
    if group.per_node.get("GPU"):
        options["num_gpus"] = group.per_node["GPU"]
    if others:
        options["resources"] = others
    return options


def _environment(request: TrialRequest, group: NodeGroup) -> dict[str, str]:
    threads = max(1, int(group.per_node.get("CPU", 1.0) // max(1, group.gpus_per_node)))
    return {"MLFLOW_TRACKING_URI": request.tracking_uri, "OMP_NUM_THREADS": str(threads)}


@ray.remote(max_retries=0)
def _locate() -> dict:
    """This bundle's node: its id, its address, and a port free there now (for the rendezvous)."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    return {"node_id": ray.get_runtime_context().get_node_id(), "address": ray.util.get_node_ip_address(), "port": port}


@ray.remote
def _node_torchrun(command: list[str], environment: dict[str, str]) -> str:
    completed = _run(command, environment)
    if completed != 0:
        raise TrialError(f"torchrun on node {ray.get_runtime_context().get_node_id()[:8]} exited with {completed}")
    return ray.get_runtime_context().get_node_id()


def _run(command: list[str], environment: dict[str, str]) -> int:
    return subprocess.run(command, env=dict(os.environ, **environment)).returncode


def _write_attempts(output_dir: str, attempts: list[Attempt]) -> None:
    record = {"attempts": [asdict(attempt) for attempt in attempts]}
    atomic_write_json(os.path.join(output_dir, NODE_GROUP_FILE), record)


def trial_spans_nodes(trial) -> bool:
    """Whether a trial (a study.trials.TrialSpec) runs over several nodes: the study's plan says
    so when it knows resources.gpus_per_node (`nodes`), else its GPUs against the cluster's."""
    if trial.nodes is not None:
        return trial.nodes > 1
    return node_group(trial_request(trial), node_resources(), trial.gpus_per_node, key=trial.key).spans_nodes
