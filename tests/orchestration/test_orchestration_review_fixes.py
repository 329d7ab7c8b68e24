"""Regression tests for defects found in review of orchestration/."""
import os
from pathlib import Path

import pytest
from fake_trial import fake_run_trial, fake_tokenizer_stage
from mlflow.tracking import MlflowClient

from var_model.errors import ConfigError

from orchestration.launcher import launch
from orchestration.study_spec import load_study
from orchestration.tracking import KIND_TAG

TINY = str(Path(__file__).parent / "fixtures" / "tiny_study.yaml")


def test_launch_refuses_a_model_num_classes_the_token_cache_does_not_have(ray_cluster, tmp_path):
    # The trainer builds the VAR with the cache's class count; the dry-run and the params logged
    # to MLflow (params_total, used as N by every fit) use model.num_classes. If they differ,
    # every fit would use a wrong N, so the launch must stop before any trial run is created.
    spec = load_study(TINY, [f"storage={tmp_path}"])

    def stage_with_other_classes(study):
        return {**fake_tokenizer_stage(study), "num_classes": spec.model.num_classes + 5}

    with open(os.devnull, "w") as stream, pytest.raises(ConfigError, match="model.num_classes"):
        launch(spec, stream=stream, tokenizer_function=stage_with_other_classes, trial_function=fake_run_trial)
    client = MlflowClient(spec.tracking_uri)
    experiment = client.get_experiment_by_name(spec.name)
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'trial'")
    assert runs == []


def test_tokenizer_stage_reports_the_cache_class_count(tmp_path):
    from orchestration.tokenizer_stage import run_tokenizer_stage

    spec = load_study(TINY, [f"storage={tmp_path}"])
    assert run_tokenizer_stage(spec)["num_classes"] == spec.model.num_classes
