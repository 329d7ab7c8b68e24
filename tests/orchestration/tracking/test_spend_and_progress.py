"""A trial's attempts and spend on its MLflow run, and the trial-side progress file, without
Ray: `execute_trial` runs in this process, and once in a spawned process that is SIGKILLed
mid-trial (as a lost node's worker would be)."""

import json
import multiprocessing
import socket
import sys
from pathlib import Path

import pytest
from fake_trial import fake_run_trial

from analysis import mlflow_schema as schema
from orchestration.execution.trial_task import TrialRequest, execute_trial
from orchestration.study.loading import load_study
from orchestration.study.trial_config import build_trial_config
from orchestration.study.trials import expand
from orchestration.tracking.attempts import AttemptLog, attempt_records
from orchestration.tracking.clients import tracking_client
from orchestration.tracking.study_runs import StudyTracker

sys.path.insert(0, str(Path(__file__).parent))  # the spawned process imports dying_trial by name
import dying_trial  # noqa: E402

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")
PROGRESS_KEYS = {"step", "steps", "train_loss", "images_per_second", "time"}


@pytest.fixture
def study(tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}"])
    tracker = StudyTracker(spec)
    tracker.start_parent()
    return spec, tracker


def request_for(spec, tracker, trial, tmp_path) -> TrialRequest:
    run_id = tracker.create_trial_run(trial, "test-revision")
    config = build_trial_config(spec, trial, str(tmp_path / "cache"))
    return TrialRequest(trial.key, run_id, spec.tracking_uri, config.output_dir, 1, config)


def test_an_attempt_left_open_is_closed_at_its_last_progress_by_the_next_one(study, tmp_path):
    spec, tracker = study
    trial = expand(spec)[2]
    request = request_for(spec, tracker, trial, tmp_path)
    # what a killed worker leaves: an attempt without an end, and its last progress file
    opened = AttemptLog(tracker.client, request.run_id).begin("lost-node", "n1", 1, 0.5, 0.0, request.output_dir)
    Path(request.output_dir).mkdir(parents=True, exist_ok=True)
    last_seen = opened["start"] + 2.0
    (Path(request.output_dir) / schema.PROGRESS_FILE).write_text(json.dumps({"time": last_seen}))
    assert execute_trial(request, fake_run_trial)["status"] == "completed"
    first, second = attempt_records(tracker.client.get_run(request.run_id).data.tags)
    assert (first["end"], first["reason"]) == (last_seen, schema.ATTEMPT_WORKER_DIED)
    assert second["reason"] == "completed" and second["end"] >= second["start"] >= first["start"]
    spent = tracker.client.get_run(request.run_id).data.metrics[schema.logged_metric_name(schema.CPU_SECONDS)]
    assert spent == pytest.approx(0.5 * (2.0 + second["end"] - second["start"]))


@pytest.mark.slow
def test_a_killed_attempt_is_closed_by_the_retry_and_spend_sums_every_attempt(study, tmp_path):
    # a real SIGKILL in a spawned process (~45 s on a loaded 2-core box: the spawn imports torch)
    spec, tracker = study
    trial = expand(spec)[0]
    request = request_for(spec, tracker, trial, tmp_path)
    process = multiprocessing.get_context("spawn").Process(target=dying_trial.run_dying_attempt, args=(request,))
    process.start()
    process.join(timeout=120)
    assert process.exitcode == -9  # killed, not a Python error: its attempt is left open
    died_at = json.loads(Path(request.output_dir, schema.PROGRESS_FILE).read_text())["time"]

    outcome = execute_trial(request, fake_run_trial)  # the retry
    assert outcome["status"] == "completed"
    run = tracking_client(spec.tracking_uri).get_run(request.run_id)
    first, second = attempt_records(run.data.tags)
    assert (first["reason"], first["end"]) == (schema.ATTEMPT_WORKER_DIED, died_at)  # its last sign of life
    assert second["reason"] == "completed" and second["node"] == socket.gethostname()
    assert first["pid"] != second["pid"] and second["cpus"] == 0.5 and second["gpus"] == 0.0
    seconds = sum(record["end"] - record["start"] for record in (first, second))
    metrics = run.data.metrics
    assert metrics[schema.logged_metric_name(schema.CPU_SECONDS)] == pytest.approx(0.5 * seconds)
    assert metrics[schema.logged_metric_name(schema.GPU_SECONDS)] == 0.0

    progress = json.loads(Path(request.output_dir, schema.PROGRESS_FILE).read_text())
    assert set(progress) == PROGRESS_KEYS
    assert (progress["step"], progress["steps"]) == (trial.steps, trial.steps)
    assert progress["images_per_second"] > 0 and progress["train_loss"] > 0


def test_the_driver_closes_an_attempt_whose_worker_died_for_good(study, tmp_path):
    spec, tracker = study
    trial = expand(spec)[1]
    request = request_for(spec, tracker, trial, tmp_path)
    attempts = AttemptLog(tracker.client, request.run_id)
    attempts.begin(node="lost-node", node_id="n1", pid=1, cpus=2.0, gpus=1.0, output_dir=request.output_dir)
    tracker.mark(request.run_id, schema.FAILED, "WorkerCrashedError: the worker died\ntraceback...")
    (record,) = attempt_records(tracker.client.get_run(request.run_id).data.tags)
    assert record["reason"] == "WorkerCrashedError: the worker died" and record["end"] >= record["start"]
    metrics = tracker.client.get_run(request.run_id).data.metrics
    assert metrics[schema.logged_metric_name(schema.GPU_SECONDS)] == pytest.approx(record["end"] - record["start"])
