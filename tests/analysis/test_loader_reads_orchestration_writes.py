"""The loader reads what the orchestration layer actually writes: runs created by
orchestration.tracking.study_runs.StudyTracker and filled by orchestration.tracking.trial_callback.MlflowTrialCallback
(no Ray, no training: the callback is driven directly with contract-shaped metrics)."""

import math
from pathlib import Path

import numpy as np
import pytest

from analysis import load_study

FIXTURE = Path(__file__).resolve().parents[1] / "orchestration" / "fixtures" / "tiny_study.yaml"


def _drive_trial(callback, trial, diverge: bool):
    from var_model.training.result import TrialResult

    callback.on_start({"depth": trial.depth, "steps": trial.steps, "resumed_step": 0})
    images_per_step = trial.batch_size
    flops = trial.flops_per_image
    for step in range(1, 4):
        images = step * images_per_step
        loss = 3.0 * trial.depth**-0.3 * (1 + 1 / step)
        callback.on_metrics(
            step,
            {
                "train_loss": loss,
                "lr": trial.lr,
                "images": images,
                "tokens": images * 21,
                "flops": images * flops,
                "test_loss_last": loss,
                "test_loss_avg": 0.9 * loss,
                "test_error_last": 0.9,
                "test_error_avg": 0.8,
                "test_loss_scale_00": 0.5 * loss,
            },
        )
    final = {
        "final_test_loss_last": loss,
        "final_test_loss_avg": 0.9 * loss,
        "final_test_error_last": 0.9,
        "final_test_error_avg": 0.8,
        "final_images": images,
        "final_tokens": images * 21,
        "final_flops": images * flops,
        "final_test_loss_scale_00": 0.5 * loss,
    }
    if diverge:
        final = {"final_train_loss": math.nan, "final_images": images}
    callback.on_end(
        TrialResult(
            status="diverged" if diverge else "completed",
            metrics=final,
            steps=3,
            checkpoint_path="",
            message="loss was NaN" if diverge else "",
        )
    )


def test_loader_reads_the_orchestration_writers(tmp_path):
    study_spec = pytest.importorskip("orchestration.study.loading")
    tracking = pytest.importorskip("orchestration.tracking.study_runs")
    trials_module = pytest.importorskip("orchestration.study.trials")
    trial_logger = pytest.importorskip("orchestration.tracking.trial_callback")
    if not FIXTURE.exists():
        pytest.skip(f"no study fixture at {FIXTURE}")
    spec = study_spec.load_study(str(FIXTURE), overrides=[f"storage={tmp_path / 'storage'}"])
    tracker = tracking.StudyTracker(spec)
    tracker.start_parent()
    trials = trials_module.expand(spec)
    for index, trial in enumerate(trials):
        run_id = tracker.create_trial_run(trial, "test-revision")
        callback = trial_logger.MlflowTrialCallback(spec.tracking_uri, run_id, str(tmp_path / trial.key))
        diverge = index == len(trials) - 1
        _drive_trial(callback, trial, diverge)
        tracker.mark(run_id, "diverged" if diverge else "completed")

    study = load_study(spec.name, spec.tracking_uri)
    frame = study.trials.set_index("trial_key")
    assert sorted(frame.index) == sorted(trial.key for trial in trials)
    assert frame["status"].value_counts().to_dict() == {"completed": len(trials) - 1, "diverged": 1}
    assert frame["depth"].dtype == np.int64 and frame["budget_value"].dtype == float
    assert frame["git_revision"].iloc[0] == "test-revision"
    completed = study.fit_trials()
    np.testing.assert_allclose(completed["flops_6nd"], 6 * completed["params_total"] * completed["tokens"])
    assert completed["test_loss_scale_00"].notna().all()
    assert study.parent_run_id == tracker.parent_run_id
    curves = study.fit_curves()
    assert set(curves["metric"]) >= {"test_loss_last", "train_loss"} and curves["flops"].notna().all()

    # `varscale fit` on this tiny, degenerate study (2 sizes x 2 budgets, one diverged) reports what
    # it cannot fit instead of failing, and still writes its files and logs to the parent run.
    from orchestration.commands.fit import fit_study

    results = fit_study(spec.name, spec.tracking_uri, str(tmp_path / "fits"), n_bootstrap=5, echo=False)
    assert results["budgets"] == ["images=16", "images=32"]
    assert any(law["error"] for law in results["laws"])
    assert (tmp_path / "fits" / "laws.csv").exists() and (tmp_path / "fits" / "results.json").exists()
    assert results["parent_run_id"] == tracker.parent_run_id
