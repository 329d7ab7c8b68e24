"""A trial that holds several GPUs runs data-parallel: torchrun inside its Ray task.

Ray gives the task `num_gpus=k` and sets CUDA_VISIBLE_DEVICES to those k devices; the task
starts `torchrun --standalone --nproc_per_node=k` on its own node, and each rank runs
`run_trial` with the same TrialConfig (the trainer's DistributedContext reads torchrun's
RANK/WORLD_SIZE, splits the global batch, and lets rank 0 alone report and write files).
Only rank 0 gets the MLflow callback. A trial therefore spans one node; for studies whose
largest model needs more than one node, use Ray Train's TorchTrainer instead (not needed up
to d30 at batch 1024 on 8 x 80 GB GPUs).

Why torchrun rather than Ray Train: Train V2 refuses `Tuner(TorchTrainer)` and cost ~40 s of
fixed overhead per 2-worker trial here (docs/ARCHITECTURE.md, measured); torchrun is what the trainer is
written and tested against. The data-parallel path needs GPUs and is not exercised by the
CPU test suite beyond the command it builds (tests/orchestration/execution/test_torchrun.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from analysis.mlflow_schema import TRIAL_CONFIG_FILE
from orchestration.execution.trial_task import TrialRequest, execute_trial
from orchestration.tracking.trial_callback import MlflowTrialCallback
from var_model.errors import TrialError
from var_model.training import run_trial
from var_model.training.config import TrialConfig
from var_model.training.result import TrialResult

# torchrun starts this module once per rank (`python -m`), so it must be importable by name.
RANK_MODULE = "orchestration.execution.torchrun"


def torchrun_command(request: TrialRequest, config_path: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={int(request.gpus)}",
        "-m",
        RANK_MODULE,
        "--trial-config",
        config_path,
        "--run-id",
        request.run_id,
        "--output-dir",
        request.output_dir,
    ]


def _run_ranks(request: TrialRequest):
    """A trial function for execute_trial: run the ranks, return rank 0's TrialResult."""

    def run(config, callback, resume=True):
        config_path = os.path.join(config.output_dir, TRIAL_CONFIG_FILE)
        config.to_yaml(config_path)
        environment = dict(os.environ, MLFLOW_TRACKING_URI=request.tracking_uri, OMP_NUM_THREADS=str(request.threads))
        completed = subprocess.run(torchrun_command(request, config_path), env=environment)
        if completed.returncode != 0:
            raise TrialError(f"torchrun for {request.key} exited with status {completed.returncode}")
        result = TrialResult.load(config.output_dir)
        if result is None:
            raise TrialError(f"torchrun for {request.key} finished without writing result.json")
        return result

    return run


def execute_data_parallel(request: TrialRequest) -> dict:
    return execute_trial(request, _run_ranks(request))


def main(argv: list[str] | None = None) -> None:
    """One torchrun rank."""
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
