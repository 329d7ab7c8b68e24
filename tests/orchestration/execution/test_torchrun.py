"""Multi-GPU trials run data-parallel through torchrun inside their Ray task. GPUs are not
available here, so the data-parallel path is exercised on CPU with gloo (slow test)."""

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from analysis.mlflow_schema import logged_metric_name
from orchestration.execution.tokenizer_task import run_tokenizer_stage
from orchestration.execution.torchrun import execute_data_parallel, torchrun_command
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
