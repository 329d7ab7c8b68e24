"""Multi-GPU trials run data-parallel through torchrun inside their Ray task. GPUs are not
available here, so the data-parallel path is exercised on CPU with gloo (slow test)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from analysis.mlflow_schema import logged_metric_name
from orchestration.execution.tokenizer_task import run_tokenizer_stage
from orchestration.execution.torchrun import (
    Rendezvous,
    execute_data_parallel,
    torchrun_command,
    with_parent_death_signal,
)
from orchestration.execution.trial_task import TrialRequest
from orchestration.study.loading import load_study
from orchestration.study.trial_config import build_trial_config
from orchestration.study.trials import expand
from orchestration.tracking.study_runs import StudyTracker, git_revision


def request(tmp_path, gpus=2, trial_config=None, run_id="abc", tracking_uri="sqlite:///x.db"):
    output_dir = trial_config.output_dir if trial_config else str(tmp_path / "out")
    return TrialRequest(
        key="d1-b32-s0",
        run_id=run_id,
        tracking_uri=tracking_uri,
        output_dir=output_dir,
        threads=1,
        trial_config=trial_config,
        gpus=gpus,
    )


def test_torchrun_command_starts_one_rank_per_gpu(tmp_path):
    command = torchrun_command(request(tmp_path, gpus=4), "/x/trial_config.yaml")
    assert command[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert "--nproc_per_node=4" in command
    assert command[command.index("--run-id") + 1] == "abc"
    assert command[command.index("--trial-config") + 1] == "/x/trial_config.yaml"


def test_a_node_of_a_multi_node_trial_joins_the_rendezvous_on_the_first_node(tmp_path):
    rendezvous = Rendezvous(nodes=4, node_rank=2, processes_per_node=8, master_address="10.0.0.5", master_port=29400)
    command = torchrun_command(request(tmp_path, gpus=32), "/x/trial_config.yaml", rendezvous)
    assert "--standalone" not in command
    for argument in ("--nnodes=4", "--node_rank=2", "--nproc_per_node=8", "--master_addr=10.0.0.5"):
        assert argument in command
    assert "--master_port=29400" in command


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's prctl")
def test_torchrun_stops_when_the_ray_worker_that_started_it_dies(tmp_path):
    # A stand-in for the Ray worker: it starts the wrapped command, reports its pid, then waits.
    # Killed -9 (as a lost node's worker is), its child must not run on as an orphan.
    sleeper = with_parent_death_signal([sys.executable, "-c", "import time; time.sleep(60)"])
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; print(subprocess.Popen(sys.argv[1:]).pid, flush=True); time.sleep(60)",
            *sleeper,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = psutil.Process(int(worker.stdout.readline()))
    time.sleep(0.5)  # let the wrapper set the signal and exec
    assert child.cmdline()[-1] == "import time; time.sleep(60)"  # the exec replaced the wrapper
    os.kill(worker.pid, 9)
    worker.wait()
    child.wait(timeout=10)  # raises psutil.TimeoutExpired if the child outlived its parent


@pytest.mark.slow
def test_two_rank_trial_on_cpu_logs_once_into_its_run(tmp_path):
    study = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")
    spec = load_study(study, [f"storage={tmp_path}", "model.depths=[1]", "budgets.values=[32]"])
    (trial,) = expand(spec)
    cache = run_tokenizer_stage(spec)["cache_path"]
    tracker = StudyTracker(spec)
    tracker.start_parent()
    run_id = tracker.create_trial_run(trial, git_revision())
    config = build_trial_config(spec, trial, cache)
    outcome = execute_data_parallel(
        request(tmp_path, gpus=2, trial_config=config, run_id=run_id, tracking_uri=spec.tracking_uri)
    )
    assert outcome["status"] == "completed"
    client = MlflowClient(spec.tracking_uri)
    run = client.get_run(run_id)
    assert run.data.params["world_size"] == "2" and run.data.tags["varscale.status"] == "completed"
    steps = [metric.step for metric in client.get_metric_history(run_id, logged_metric_name("train_loss"))]
    assert sorted(steps) == list(range(1, trial.steps + 1))  # rank 0 alone logs
