import json
import math
from pathlib import Path

import pytest
import torch

from var_model.errors import CheckpointError, TrialError
from var_model.training import TrialCallback, TrialResult, read_metrics, run_trial
from var_model.training import step as step_module


class Recorder(TrialCallback):
    def __init__(self):
        self.started, self.metrics, self.checkpoints, self.ended = [], [], [], []

    def on_start(self, info):
        self.started.append(info)

    def on_metrics(self, step, metrics):
        self.metrics.append((step, metrics))

    def on_checkpoint(self, step, path):
        self.checkpoints.append((step, path))

    def on_end(self, result):
        self.ended.append(result)


def test_trial_completes_with_the_schema_metrics_and_counters(tiny_trial):
    recorder = Recorder()
    result = run_trial(tiny_trial, callback=recorder, resume=False)
    assert result.status == "completed" and result.steps == 12
    info = recorder.started[0]
    for key in (
        "depth",
        "width",
        "params_total",
        "params_per_token",
        "flops_per_image",
        "flops_per_image_6n",
        "steps",
        "lr",
        "batch_size",
    ):
        assert key in info, key
    assert info["steps"] == 12 and info["resumed_step"] == 0
    assert [step for step, _ in recorder.metrics] == [4, 6, 8, 12]
    for step, metrics in recorder.metrics:
        assert metrics["images"] == 16 * step
        assert metrics["tokens"] == 16 * 21 * step
        assert metrics["flops"] == 16 * info["flops_per_image"] * step
    final_step, final = recorder.metrics[-1]
    for key in (
        "train_loss",
        "train_error",
        "lr",
        "test_loss_avg",
        "test_loss_last",
        "test_error_avg",
        "test_error_last",
        "test_loss_scale_00",
        "test_loss_scale_01",
        "test_loss_scale_02",
    ):
        assert key in final, key
    assert final["test_loss_scale_02"] == pytest.approx(final["test_loss_last"])
    for key in (
        "final_test_loss_avg",
        "final_test_loss_last",
        "final_test_error_avg",
        "final_test_error_last",
        "final_images",
        "final_tokens",
        "final_flops",
    ):
        assert key in result.metrics, key
    # it learnt something: far below the uniform loss ln(64) = 4.16
    assert result.metrics["final_test_loss_avg"] < math.log(64) - 0.5
    assert [step for step, _ in recorder.checkpoints] == [6, 12]
    assert recorder.ended == [result]
    written = read_metrics(Path(tiny_trial.output_dir) / "metrics.jsonl")
    assert [record["step"] for record in written] == [4, 6, 8, 12]
    assert TrialResult.load(tiny_trial.output_dir) == result


def test_resume_after_interruption_is_bit_identical(tiny_trial, tmp_path, stop_after_checkpoint):
    config = tiny_trial.replace(
        model={"depth": 1, "width": 32, "num_heads": 2, "class_dropout": 0.5, "drop_path_rate": 0.2}
    )
    uninterrupted = run_trial(config.replace(output_dir=str(tmp_path / "straight")), resume=False)
    interrupted = config.replace(output_dir=str(tmp_path / "interrupted"))
    with pytest.raises(KeyboardInterrupt):
        run_trial(interrupted, callback=stop_after_checkpoint(6), resume=False)
    recorder = Recorder()
    resumed = run_trial(interrupted, callback=recorder)
    assert recorder.started[0]["resumed_step"] == 6
    assert resumed.metrics == uninterrupted.metrics  # exact, not approximate
    straight = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    again = read_metrics(tmp_path / "interrupted" / "metrics.jsonl")

    def strip(records):
        return [{k: v for k, v in r.items() if k != "elapsed_seconds"} for r in records]

    assert strip(straight) == strip(again)


def test_finished_trial_is_returned_without_training_again(tiny_trial):
    first = run_trial(tiny_trial, resume=False)
    recorder = Recorder()
    assert run_trial(tiny_trial, callback=recorder) == first
    assert recorder.started == []
    with pytest.raises(TrialError, match="different config"):
        run_trial(tiny_trial.replace(base_lr=1e-3))


def test_checkpoint_from_another_config_is_refused(tiny_trial, stop_after_checkpoint):
    with pytest.raises(KeyboardInterrupt):
        run_trial(tiny_trial, callback=stop_after_checkpoint(6), resume=False)
    with pytest.raises(CheckpointError, match="batch_size"):
        run_trial(tiny_trial.replace(batch_size=8, budget_value=8 * 24))


def test_loss_above_the_limit_ends_the_trial_as_diverged(tiny_trial):
    recorder = Recorder()
    result = run_trial(tiny_trial.replace(divergence_loss=0.5), callback=recorder, resume=False)
    assert result.status == "diverged" and result.steps == 4
    assert "train loss" in result.message and result.metrics["final_images"] == 64
    assert recorder.ended == [result]
    stored = json.loads((Path(tiny_trial.output_dir) / "result.json").read_text())
    assert stored["status"] == "diverged"


def test_nan_loss_is_a_diverged_result_not_an_exception(tiny_trial, monkeypatch):
    real = step_module.token_losses

    def poisoned(logits_BLV, target_BL):
        loss_BL, error_BL = real(logits_BLV, target_BL)
        return loss_BL * torch.tensor(math.nan), error_BL

    monkeypatch.setattr(step_module, "token_losses", poisoned)
    result = run_trial(tiny_trial, resume=False)
    assert result.status == "diverged" and math.isnan(result.metrics["final_train_loss"])
    assert not (Path(tiny_trial.output_dir) / "checkpoint.pt").exists()


def test_sample_grid_is_written(tiny_trial):
    config = tiny_trial.replace(
        budget_value=16 * 2, sample_grid=True, samples_per_class=2, eval_every=0, checkpoint_every=0, log_every=1
    )
    run_trial(config, resume=False)
    from PIL import Image

    with Image.open(Path(config.output_dir) / "samples.png") as grid:
        assert grid.size == (2 * 32, 4 * 32)


def test_crash_after_the_final_checkpoint_completes_on_resume(tiny_trial):
    first = run_trial(tiny_trial, resume=False)
    (Path(tiny_trial.output_dir) / "result.json").unlink()
    again = run_trial(tiny_trial)
    assert again.status == "completed" and again.steps == first.steps
    for key in ("final_test_loss_avg", "final_test_error_last", "final_flops"):
        assert again.metrics[key] == first.metrics[key], key
