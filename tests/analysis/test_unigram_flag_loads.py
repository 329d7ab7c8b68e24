"""A trial flagged by the trainer as ending above its cache's unigram baseline is read from MLflow
(under the sectioned name and the plain one) and left out of the fits, kept in the table."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from synthetic_study import DEPTHS

from analysis import load_study
from analysis.mlflow_schema import logged_metric_name

FLAG = "final_above_unigram_baseline"  # var_model.training.result.ABOVE_BASELINE_METRIC


@pytest.mark.parametrize("stored_name", [logged_metric_name(FLAG), FLAG])
def test_a_flagged_trial_is_loaded_and_not_fitted(tmp_path, stored_name):
    from synthetic_study import build_synthetic_study

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    build_synthetic_study(uri, (tmp_path / "artifacts").as_uri(), study="flagged")
    client = MlflowClient(uri)
    flagged_key = f"d{DEPTHS[0]}-b1e12-s0"
    experiment = client.get_experiment_by_name("flagged")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    client.log_metric(runs[flagged_key].info.run_id, stored_name, 1.0)
    client.log_metric(runs[f"d{DEPTHS[1]}-b1e12-s0"].info.run_id, stored_name, 0.0)

    study = load_study("flagged", uri)
    trials = study.trials.set_index("trial_key")
    assert trials.loc[flagged_key, "above_unigram_baseline"] == 1.0
    assert flagged_key not in set(study.fit_trials()["trial_key"])
    assert f"d{DEPTHS[1]}-b1e12-s0" in set(study.fit_trials()["trial_key"])
