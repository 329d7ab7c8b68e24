"""Regression tests for defects found in review of analysis/ and the fit command."""

import mlflow.tracking
import pytest

import analysis
from analysis.errors import StudyNotFoundError
from analysis.report import report_results

CREDENTIALED_URI = "https://alice:s3cret@mlflow.example.org:5443/"


def test_results_json_does_not_carry_tracking_uri_credentials(synthetic_study):
    # results.json is written to disk and logged as an MLflow artifact: a password in the
    # tracking URI must not end up in it.
    study_frame = analysis.load_study(synthetic_study["study"], synthetic_study["tracking_uri"])
    fits = analysis.fit_study_laws(study_frame, n_bootstrap=0, parametric=False)
    results = report_results(study_frame, fits, CREDENTIALED_URI)
    assert "s3cret" not in str(results) and "alice" not in str(results)
    assert results["tracking_uri"] == "https://mlflow.example.org:5443/"


def test_study_not_found_error_does_not_print_tracking_uri_credentials(monkeypatch):
    class NoStudies:
        def __init__(self, tracking_uri=None):
            pass

        def get_experiment_by_name(self, name):
            return None

        def search_experiments(self):
            return []

    monkeypatch.setattr(mlflow.tracking, "MlflowClient", NoStudies)
    with pytest.raises(StudyNotFoundError) as raised:
        analysis.load_study("nope", CREDENTIALED_URI)
    assert "s3cret" not in str(raised.value) and "mlflow.example.org:5443" in str(raised.value)


def test_compute_law_of_a_one_depth_study_survives_its_impossible_holdout_check():
    # One model size, three budgets: the frontier law vs C is fittable, but the extrapolation
    # check (hold out the largest model) is not. The optional check must not discard the law.
    import pandas as pd

    from analysis.loader import StudyFrame

    trials, curves = [], []
    for budget in (1e12, 1e13, 1e14):
        key = f"d4-b{budget:.0e}-s0"
        loss = 3.0 * (budget / 1e15) ** -0.1
        trials.append(
            {
                "study": "one-depth",
                "trial_key": key,
                "run_id": key,
                "status": "completed",
                "depth": 4,
                "params_total": 64_000_000,
                "budget_kind": "flops",
                "budget_value": budget,
                "tokens": budget / 4e8,
                "flops": budget,
                "test_loss_last": loss,
            }
        )
        for step in (1, 2, 3, 4):
            curves.append(
                {
                    "trial_key": key,
                    "run_id": key,
                    "metric": "test_loss_last",
                    "step": step,
                    "value": 3.0 * (budget * step / 4 / 1e15) ** -0.1,
                    "images": 0.0,
                    "tokens": 0.0,
                    "flops": budget * step / 4,
                    "depth": 4,
                    "params_total": 64_000_000,
                }
            )
    frame = StudyFrame("one-depth", pd.DataFrame(trials), pd.DataFrame(curves))
    fits = analysis.fit_study_laws(frame, metrics=("test_loss_last",), n_bootstrap=0, parametric=False)
    law = fits.law("test_loss_last", "C")
    assert law.error is None and law.fit is not None
    assert law.fit.alpha == pytest.approx(-0.1, abs=1e-6)
    assert law.extrapolation is None
