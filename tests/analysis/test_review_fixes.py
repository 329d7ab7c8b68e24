"""Regression tests for defects found in review of analysis/ and the fit command."""
import mlflow.tracking
import pytest

import analysis
from analysis.errors import StudyNotFoundError
from orchestration.fit_command import _results

CREDENTIALED_URI = "https://alice:s3cret@mlflow.example.org:5443/"


def test_results_json_does_not_carry_tracking_uri_credentials(synthetic_study):
    # results.json is written to disk and logged as an MLflow artifact: a password in the
    # tracking URI must not end up in it.
    study_frame = analysis.load_study(synthetic_study["study"], synthetic_study["tracking_uri"])
    fits = analysis.fit_study_laws(study_frame, n_bootstrap=0, parametric=False)
    results = _results(study_frame, fits, CREDENTIALED_URI)
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
