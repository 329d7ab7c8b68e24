"""`varscale launch` end to end with the real tokenizer stage and trainer: 4 tiny trials on
the shared Ray, one MLflow parent and one child per trial with the schema analysis reads; a
relaunch trains nothing and duplicates nothing; `varscale status` reports them."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from analysis.mlflow_schema import KIND_TAG, PARENT_RUN_TAG, STATUS_TAG, TRIAL_KEY_TAG, logged_metric_name
from orchestration.cli import main
from orchestration.execution.launcher import launch
from orchestration.study.loading import load_study
from orchestration.study.trials import expand

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")
CONTRACT_PARAMS = {
    "depth",
    "width",
    "heads",
    "params_total",
    "params_per_token",
    "flops_per_image",
    "flops_per_image_6n",
    "budget_kind",
    "budget_value",
    "steps",
    "batch_size",
    "lr",
    "base_lr",
    "seed",
    "schedule",
    "git_revision",
}
FINAL_METRICS = {
    "final_test_loss_avg",
    "final_test_loss_last",
    "final_test_error_avg",
    "final_test_error_last",
    "final_images",
    "final_tokens",
    "final_flops",
}


def test_varscale_launch_trains_a_tiny_study_once(ray_cluster, tmp_path, capsys):
    overrides = ["--set", f"storage={tmp_path}"]
    assert main(["launch", TINY, *overrides]) == 0
    assert "tiny_test: 4 completed (0 finished earlier)" in capsys.readouterr().out

    spec = load_study(TINY, [f"storage={tmp_path}"])
    client = MlflowClient(spec.tracking_uri)
    experiment = client.get_experiment_by_name("tiny_test")
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if run.data.tags[KIND_TAG] == "study"]
    children = {run.data.tags[TRIAL_KEY_TAG]: run for run in runs if run.data.tags[KIND_TAG] == "trial"}
    assert len(parents) == 1 and sorted(children) == sorted(trial.key for trial in expand(spec))
    assert "tokenizer_reconstruction_mse" in parents[0].data.metrics
    for trial in expand(spec):
        run = children[trial.key]
        assert run.data.tags[STATUS_TAG] == "completed" and run.data.tags[PARENT_RUN_TAG] == parents[0].info.run_id
        assert CONTRACT_PARAMS <= set(run.data.params)
        assert int(run.data.params["steps"]) == trial.steps  # dry-run and trainer agree
        assert {logged_metric_name(name) for name in FINAL_METRICS} <= set(run.data.metrics)
        assert run.data.metrics[logged_metric_name("final_images")] == trial.images
        losses = client.get_metric_history(run.info.run_id, logged_metric_name("train_loss"))
        assert sorted(metric.step for metric in losses) == list(range(1, trial.steps + 1))
        assert len(client.get_metric_history(run.info.run_id, logged_metric_name("test_loss_avg"))) >= 1
        assert {"samples.png", "trial_config.yaml"} <= {a.path for a in client.list_artifacts(run.info.run_id)}

    assert main(["launch", TINY, *overrides]) == 0
    assert "all 4 trials already finished; nothing to run" in capsys.readouterr().out
    assert len(client.search_runs([experiment.experiment_id])) == 5

    assert main(["status", TINY, *overrides]) == 0
    assert "tiny_test: 4 completed" in capsys.readouterr().out

    # `varscale demo` = launch (nothing left to run) + fit + where to look
    assert main(["demo", TINY, *overrides]) == 0
    output = capsys.readouterr().out
    assert "all 4 trials already finished" in output and "varscale ui" in output
    assert (tmp_path / "fits" / "results.json").exists()


@pytest.mark.slow
def test_real_trial_killed_mid_run_resumes_from_checkpoint_pt(ray_cluster, tmp_path):
    spec = load_study(
        TINY,
        [f"storage={tmp_path}", "model.depths=[2]", "budgets.values=[160]", "trial.log_every=1", "trial.eval_every=0"],
    )
    (trial,) = expand(spec)
    directory = Path(spec.storage, "trials", trial.key)
    killed = []

    def kill_after_six_logged_steps():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed and not (directory / "result.json").exists():
            metrics = directory / "metrics.jsonl"
            if (
                (directory / "checkpoint.pt").exists()
                and metrics.exists()
                and metrics.read_text().count('"event": "metrics"') >= 6
            ):
                client = MlflowClient(spec.tracking_uri)
                experiment = client.get_experiment_by_name(spec.name)
                (run,) = client.search_runs([experiment.experiment_id], f"tags.`{KIND_TAG}` = 'trial'")
                pid = int(run.data.tags["varscale.pid"])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.1)

    killer = threading.Thread(target=kill_after_six_logged_steps)
    killer.start()
    with open(os.devnull, "w") as stream:
        result = launch(spec, stream=stream)
    killer.join()
    assert killed and result.statuses == {trial.key: "completed"}
    client = MlflowClient(spec.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(spec.name).experiment_id], f"tags.`{KIND_TAG}` = 'trial'")
    assert len(runs) == 1 and runs[0].data.tags["varscale.attempts"] == "2"
    assert int(runs[0].data.tags["varscale.resumed_step"]) > 0
    steps = sorted(
        {metric.step for metric in client.get_metric_history(runs[0].info.run_id, logged_metric_name("train_loss"))}
    )
    assert steps == list(range(1, trial.steps + 1))
