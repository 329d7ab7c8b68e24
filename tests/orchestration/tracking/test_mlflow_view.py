"""The MLflow view of a launched study: its experiment carries MLflow's experiment-kind tag (or
the UI opens its GenAI view, without runs), child runs are named by trial key, and metrics are
stored under sections (`train/loss`) that the loader reads back under today's column names,
as it reads stores written before the sections (plain names)."""

from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Metric

from analysis import mlflow_schema as schema
from analysis.loader import load_study

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")


def _check_view(spec) -> None:
    from orchestration.study.trials import expand
    from orchestration.tracking.clients import tracking_client

    client = tracking_client(spec.tracking_uri)
    experiment = client.get_experiment_by_name(spec.name)
    assert experiment.tags[schema.EXPERIMENT_KIND_TAG] == schema.CUSTOM_MODEL_KIND
    runs = client.search_runs([experiment.experiment_id], f"tags.`{schema.KIND_TAG}` = '{schema.TRIAL_KIND}'")
    assert sorted(run.info.run_name for run in runs) == sorted(trial.key for trial in expand(spec))
    stored = set(runs[0].data.metrics)
    assert {"train/loss", "counters/images", "final/test_loss_avg", "final/images"} <= stored
    assert not stored & {"train_loss", "images", "final_test_loss_avg"}  # only sectioned names
    (parent,) = client.search_runs([experiment.experiment_id], f"tags.`{schema.KIND_TAG}` = '{schema.STUDY_KIND}'")
    assert parent.data.tags[schema.NOTE_TAG].startswith(f"## Study {spec.name}")


def _replay_with_plain_names(spec, frame, name: str) -> None:
    """The same trials and histories, written as stores were before the sections."""
    from orchestration.tracking.clients import tracking_client

    client = tracking_client(spec.tracking_uri)
    experiment = client.create_experiment(name)
    source = client.get_experiment_by_name(spec.name).experiment_id
    for run in client.search_runs([source], f"tags.`{schema.KIND_TAG}` = '{schema.TRIAL_KIND}'"):
        copy = client.create_run(experiment, run_name=run.info.run_name, tags=run.data.tags)
        metrics = [
            Metric(schema.plain_metric_name(key), point.value, point.timestamp, point.step)
            for key in run.data.metrics
            for point in client.get_metric_history(run.info.run_id, key)
        ]
        client.log_batch(copy.info.run_id, metrics=metrics)
        for key, value in run.data.params.items():
            client.log_param(copy.info.run_id, key, value)


def test_a_study_run_by_the_trial_task_has_the_view_and_loads_old_and_new_names(tmp_path):
    from fake_trial import fake_run_trial

    from orchestration.execution.trial_task import TrialRequest, execute_trial
    from orchestration.study.loading import load_study as load_spec
    from orchestration.study.trial_config import build_trial_config
    from orchestration.study.trials import expand
    from orchestration.tracking.study_runs import StudyTracker

    spec = load_spec(TINY, [f"storage={tmp_path}", "model.depths=[1]", "budgets.values=[16]"])  # one trial
    tracker = StudyTracker(spec)
    tracker.start_parent()
    for trial in expand(spec):
        config = build_trial_config(spec, trial, str(tmp_path / "cache"))
        run_id = tracker.create_trial_run(trial, "test-revision")
        execute_trial(TrialRequest(trial.key, run_id, spec.tracking_uri, config.output_dir, 1, config), fake_run_trial)
    _check_view(spec)

    new = load_study(spec.name, spec.tracking_uri)
    assert new.trials["test_loss_avg"].notna().all() and (new.trials["images"] > 0).all()  # the finals
    assert {"train_loss", "lr", "images_per_second"} <= set(new.curves["metric"])
    assert new.curves["images"].notna().all()  # counters aligned under their plain names

    _replay_with_plain_names(spec, new, "plain-names")
    old = load_study("plain-names", spec.tracking_uri)
    columns = ["trial_key", "status", "depth", "images", "tokens", "flops", "test_loss_avg", "params_total"]
    pd.testing.assert_frame_equal(old.trials[columns], new.trials[columns])
    curve_columns = ["trial_key", "metric", "step", "value", "images"]
    pd.testing.assert_frame_equal(old.curves[curve_columns], new.curves[curve_columns])


@pytest.mark.slow
def test_a_launched_study_has_the_view(ray_cluster, tmp_path):
    from fake_trial import fake_run_trial, fake_tokenizer_stage

    from orchestration.execution.launcher import launch
    from orchestration.study.loading import load_study as load_spec

    spec = load_spec(TINY, [f"storage={tmp_path}"])
    with open("/dev/null", "w") as stream:
        result = launch(spec, stream=stream, trial_function=fake_run_trial, tokenizer_function=fake_tokenizer_stage)
    assert result.ok
    _check_view(spec)
    assert load_study(spec.name, spec.tracking_uri).trials["test_loss_avg"].notna().all()
