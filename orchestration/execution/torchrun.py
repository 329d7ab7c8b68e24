"""A trial that holds several GPUs runs data-parallel: torchrun inside its Ray task.

Ray gives the task `num_gpus=k` and sets CUDA_VISIBLE_DEVICES to those k devices; the task
starts `torchrun --standalone --nproc_per_node=k` on its own node, and each rank runs
`run_trial` with the same TrialConfig (the trainer's DistributedContext reads torchrun's
RANK/WORLD_SIZE, splits the global batch, and lets rank 0 alone report and write files).
Only rank 0 gets the MLflow callback. A trial with more GPUs than one node has runs one
torchrun per node instead, with a `Rendezvous` on the first node (execution.multi_node).

Why torchrun rather than Ray Train: Train V2 refuses `Tuner(TorchTrainer)` and cost ~40 s of
fixed overhead per 2-worker trial here (docs/ARCHITECTURE.md, measured); torchrun is what the trainer is
written and tested against. The data-parallel path needs GPUs and is not exercised by the
CPU test suite beyond the command it builds (tests/orchestration/execution/test_torchrun.py).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

from analysis.mlflow_schema import TRIAL_CONFIG_FILE
from orchestration.execution.trial_task import TrialRequest, execute_trial
from orchestration.tracking.trial_callback import MlflowTrialCallback
from var_model.errors import TrialError
from var_model.training import run_trial
from var_model.training.config import TrialConfig
from var_model.training.result import TrialResult

# torchrun starts this module once per rank (`python -m`), so it must be importable by name.
RANK_MODULE = "orchestration.execution.torchrun"


@dataclass(frozen=True)
class Rendezvous:
    """One node's place in a trial over several nodes: torchrun's static rendezvous, whose
    store the first node's torchrun serves at master_address:master_port."""

    nodes: int
    node_rank: int
    processes_per_node: int
    master_address: str
    master_port: int


def torchrun_command(request: TrialRequest, config_path: str, rendezvous: Rendezvous | None = None) -> list[str]:
    if rendezvous is None:
        placement = ["--standalone", f"--nproc_per_node={int(request.gpus)}"]
    else:
        placement = [
            f"--nnodes={rendezvous.nodes}",
            f"--node_rank={rendezvous.node_rank}",
            f"--nproc_per_node={rendezvous.processes_per_node}",
            f"--master_addr={rendezvous.master_address}",
            f"--master_port={rendezvous.master_port}",
        ]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *placement,
        "-m",
        RANK_MODULE,
        "--trial-config",
        config_path,
        "--run-id",
        request.run_id,
        "--output-dir",
        request.output_dir,
    ]


# Run before torchrun's own start (`python -c` then exec): the kernel sends torchrun SIGTERM
# when the Ray worker that started it dies (node lost, task cancelled), and torchrun then
# stops its ranks. Without it they would run on as orphans, writing the trial's checkpoint
# beside the restarted group. prctl(PR_SET_PDEATHSIG) is Linux only; elsewhere a plain exec.
_EXEC_WITH_PARENT_DEATH_SIGNAL = """
import ctypes, os, signal, sys
if sys.platform.startswith("linux"):
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() == 1:
        sys.exit("the Ray worker that started torchrun is gone")
os.execv(sys.argv[1], sys.argv[1:])
"""


def with_parent_death_signal(command: list[str]) -> list[str]:
    """`command`, stopped (SIGTERM) when the process that starts it dies."""
    return [sys.executable, "-c", _EXEC_WITH_PARENT_DEATH_SIGNAL, *command]


def _run_ranks(request: TrialRequest):
    """A trial function for execute_trial: run the ranks, return rank 0's TrialResult."""

    def run(config, callback, resume=True):
        config_path = os.path.join(config.output_dir, TRIAL_CONFIG_FILE)
        config.to_yaml(config_path)
        environment = dict(os.environ, MLFLOW_TRACKING_URI=request.tracking_uri, OMP_NUM_THREADS=str(request.threads))
        completed = subprocess.run(with_parent_death_signal(torchrun_command(request, config_path)), env=environment)
        if completed.returncode != 0:
            raise TrialError(f"torchrun for {request.key} exited with status {completed.returncode}")
        return rank_zero_result(config.output_dir, f"torchrun for {request.key}")

    return run


def rank_zero_result(output_dir: str, what: str) -> TrialResult:
    """The result rank 0 wrote: the ranks ran in other processes, so the file is the answer."""
    result = TrialResult.load(output_dir)
    if result is None:
        raise TrialError(f"{what} finished without writing result.json")
    return result


def execute_data_parallel(request: TrialRequest) -> dict:
    return execute_trial(request, _run_ranks(request))


def _die_with_torchrun() -> None:
    """A rank outlives its torchrun when torchrun is killed (torchrun starts ranks in sessions of
    their own): it would train on with the other ranks behind a restarted group. So the kernel
    kills it with its parent (Linux prctl PR_SET_PDEATHSIG; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def main(argv: list[str] | None = None) -> None:
    """One torchrun rank."""
    _die_with_torchrun()
    parser = argparse.ArgumentParser(description="one rank of a data-parallel varscale trial")
    parser.add_argument("--trial-config", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--output-dir", required=True)
    arguments = parser.parse_args(argv)
    config = TrialConfig.from_yaml(arguments.trial_config)
    callback = None
    if int(os.environ.get("RANK", "0")) == 0:
        callback = MlflowTrialCallback(os.environ["MLFLOW_TRACKING_URI"], arguments.run_id, arguments.output_dir)
    run_trial(config, callback, resume=True)


if __name__ == "__main__":
    main()
