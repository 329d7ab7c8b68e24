"""`varscale status` from MLflow alone (a study that runs elsewhere): per-trial progress,
spend over attempts beside the dry run's estimate, for new (sectioned) and old metric names."""

import time
from pathlib import Path

from fake_trial import fake_run_trial
from mlflow.entities import Metric

from analysis import mlflow_schema as schema
from orchestration.execution.trial_task import TrialRequest, execute_trial
from orchestration.study.loading import load_study
from orchestration.study.trial_config import build_trial_config
from orchestration.study.trials import expand
from orchestration.tracking.status import status_table, study_status
from orchestration.tracking.study_runs import StudyTracker

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")


def test_status_shows_progress_spend_and_estimate_per_trial(tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}"])
    tracker = StudyTracker(spec)
    tracker.start_parent()
    finished, running, old = expand(spec)[:3]
    run_id = tracker.create_trial_run(finished, "test-revision")
    config = build_trial_config(spec, finished, str(tmp_path / "cache"))
    execute_trial(TrialRequest(finished.key, run_id, spec.tracking_uri, config.output_dir, 1, config), fake_run_trial)
    # a trial still running elsewhere: two train logs so far, sectioned names
    running_id = tracker.create_trial_run(running, "test-revision")
    now = int(time.time() * 1000)
    logged = {"train_loss": 2.5, "images": 16.0, schema.IMAGES_PER_SECOND: 40.0}
    tracker.client.log_batch(
        running_id, metrics=[Metric(schema.logged_metric_name(name), value, now, 2) for name, value in logged.items()]
    )
    tracker.client.set_tag(running_id, schema.STATUS_TAG, schema.RUNNING)
    # a run of a store written before the sections: plain names
    old_id = tracker.create_trial_run(old, "test-revision")
    tracker.client.log_batch(old_id, metrics=[Metric("train_loss", 3.5, now, 1), Metric("images", 8.0, now, 1)])

    rows = {row["trial"]: row for row in study_status(spec)}
    done = rows[finished.key]
    assert done["state"] == "completed" and (done["step"], done["steps"]) == (finished.steps, finished.steps)
    assert done["cpu_seconds"] > 0 and done["gpu_seconds"] == 0 and done["estimated_cpu_seconds"] > 0
    assert done["nodes"] and done[schema.IMAGES_PER_SECOND] > 0
    assert (rows[running.key]["step"], rows[running.key]["train_loss"]) == (2, 2.5)
    assert rows[running.key][schema.IMAGES_PER_SECOND] == 40.0
    assert (rows[old.key]["step"], rows[old.key]["train_loss"]) == (1, 3.5)
    assert rows[expand(spec)[3].key]["state"] == "pending"

    table = status_table(spec)
    assert f"2/{running.steps}" in table and "img/s" in table and "CPU time spent / est." in table
    assert "spend over every attempt:" in table and "the dry run's estimate:" in table


def test_status_of_a_study_whose_data_is_elsewhere(tmp_path):
    """The paper's study is launched on a cluster with --set data.root=...; `varscale status`
    from a laptop without that folder (or the flag) still reads its runs."""
    paper = str(Path(__file__).parents[3] / "studies" / "var_imagenet256.yaml")
    spec = load_study(paper, [f"storage={tmp_path}"])
    StudyTracker(spec).start_parent()
    rows = study_status(spec)
    assert len(rows) == 24 and {row["state"] for row in rows} == {"pending"}
