"""Ctrl-C keeps what finished: a task that returned before the driver collected it, and one that
set its run's status just as the cancel came, are results, not interrupted trials (a probe saw a
finished trial marked failed); the rest are stopped and left resumable, none RUNNING."""

import io
from pathlib import Path

import ray
from fake_trial import returned_result, sleep_for

from analysis import mlflow_schema as schema
from orchestration.execution.launch_result import INTERRUPTED, NOT_STARTED, LaunchResult
from orchestration.execution.launcher import progress_trials
from orchestration.execution.progress import Progress
from orchestration.execution.trial_records import TrialRecords
from orchestration.study.loading import load_study
from orchestration.study.trial_config import trial_output_dir
from orchestration.study.trials import expand
from orchestration.tracking.study_runs import StudyTracker, git_revision

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")


def test_interrupt_keeps_returned_and_just_finished_trials_and_stops_the_rest(ray_cluster, tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}"])
    returned, just_finished, running, waiting = expand(spec)
    tracker = StudyTracker(spec)
    tracker.start_parent()
    revision = git_revision()
    run_ids = {trial.key: tracker.create_trial_run(trial, revision) for trial in expand(spec)}
    output_dirs = {trial.key: trial_output_dir(spec, trial) for trial in expand(spec)}
    result = LaunchResult()
    progress = Progress(spec.name, progress_trials(expand(spec), output_dirs), io.StringIO())
    records = TrialRecords(result, progress, tracker, run_ids, output_dirs)
    records.created.update(run_ids)

    task = ray.remote(num_cpus=0.25, max_retries=0)
    # Ray's workers get these by value (conftest): a function of this module would go by reference to
    # `tests.orchestration...`, which a worker cannot import where another package named `tests`
    # is installed (torch-fidelity 0.4.0 ships one into site-packages).
    returned_ref = task(returned_result).remote(returned.key)
    ray.wait([returned_ref], timeout=120)  # it has returned; the loop has not collected it yet
    sleeper = task(sleep_for)
    refs = {returned_ref: returned, sleeper.remote(600): just_finished, sleeper.remote(600): running}
    # the task wrapper sets the status tag before it returns: this one got that far
    tracker.client.set_tag(run_ids[just_finished.key], schema.STATUS_TAG, schema.COMPLETED)

    records.interrupt(refs)
    records.never_started([waiting.key])

    assert result.statuses == {
        returned.key: "completed",
        just_finished.key: "completed",
        running.key: INTERRUPTED,
        waiting.key: NOT_STARTED,
    }
    assert result.errors == {} and refs == {}
    stopped = tracker.client.get_run(run_ids[running.key])
    assert stopped.info.status == "KILLED" and stopped.data.tags[schema.STATUS_TAG] == schema.FAILED
    assert "relaunch" in stopped.data.tags[schema.FAILURE_TAG]
    never = tracker.client.get_run(run_ids[waiting.key])
    assert never.info.status == "KILLED" and never.data.tags[schema.STATUS_TAG] == schema.PENDING
    kept = tracker.client.get_run(run_ids[just_finished.key])
    assert kept.data.tags[schema.STATUS_TAG] == schema.COMPLETED
