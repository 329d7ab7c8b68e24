"""analysis.report: what `varscale fit` and the notebook show and save."""

import analysis
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
