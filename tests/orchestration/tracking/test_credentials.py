"""A tracking URI with credentials (http://user:secret@host:port) never reaches the console or a
worker's log. MLflow 3.17's REST client printed "View run <name> at: http://user:secret@..." at
every `set_terminated`, in the driver and in each trial worker; a failing trial's traceback may
carry the URI too. The slow test runs a real `mlflow server` (it ignores the credentials: no
auth app), a driver in this process and a trial in a spawned process whose output is a file,
as a Ray worker's log is."""

import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_trial import fake_run_trial

from analysis import mlflow_schema as schema
from orchestration.tracking.clients import SUPPRESS_RUN_URL_VARIABLE, tracking_client

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")
SECRET = "s3cr3t-pa55"


def test_redact_text_removes_user_password_and_the_password_alone():
    uri = f"http://alice:{SECRET}@mlflow.example.org:5000"
    text = f"API request to {uri}/api/2.0/mlflow/runs/get failed; password {SECRET}"
    redacted = schema.redact_text(text, uri)
    assert SECRET not in redacted and "http://mlflow.example.org:5000/api/2.0" in redacted
    assert schema.redact_text(text, "sqlite:////tmp/x.db") == text


def test_clients_are_opened_with_run_url_printing_off(monkeypatch, tmp_path):
    from mlflow.environment_variables import MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT

    monkeypatch.delenv(SUPPRESS_RUN_URL_VARIABLE, raising=False)
    tracking_client(f"sqlite:///{tmp_path}/mlflow.db")
    assert MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.get() is True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _trial_in_a_worker(request, log_path: str, fail: bool) -> None:
    """A worker: its stdout and stderr go to a log file, as a Ray worker's do."""
    from orchestration.execution.trial_task import execute_trial

    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)

    def failing(config, callback=None, resume=True):
        raise ConnectionError(f"could not reach {request.tracking_uri}/api/2.0/mlflow/runs/log-batch")

    try:
        execute_trial(request, failing if fail else fake_run_trial)
    except Exception as error:
        print(f"worker error: {type(error).__name__}: {error}", flush=True)  # what Ray would log and return


@pytest.fixture
def credentialed_server(tmp_path):
    port = _free_port()
    environment = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    command = [mlflow, "server", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1", "--artifacts-destination", str(tmp_path / "server-artifacts")]
    server = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
        time.sleep(1)
    yield f"http://alice:{SECRET}@127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=60)


@pytest.mark.slow
def test_no_secret_on_the_console_or_in_worker_logs(credentialed_server, tmp_path, capfd):
    from orchestration.execution.trial_task import TrialRequest
    from orchestration.study.loading import load_study
    from orchestration.study.trial_config import build_trial_config
    from orchestration.study.trials import expand
    from orchestration.tracking.study_runs import StudyTracker

    spec = load_study(TINY, [f"storage={tmp_path / 'storage'}", f"tracking_uri={credentialed_server}"])
    tracker = StudyTracker(spec)
    tracker.start_parent()
    log_path = str(tmp_path / "worker.log")
    requests = []
    for trial, fail in zip(expand(spec)[:2], (False, True), strict=True):
        run_id = tracker.create_trial_run(trial, "test-revision")
        config = build_trial_config(spec, trial, str(tmp_path / "cache"))
        request = TrialRequest(trial.key, run_id, spec.tracking_uri, config.output_dir, 1, config)
        requests.append(request)
        worker = multiprocessing.get_context("spawn").Process(target=_trial_in_a_worker, args=(request, log_path, fail))
        worker.start()
        worker.join(timeout=300)
    tracker.mark(requests[1].run_id, schema.FAILED, f"RayTaskError: {credentialed_server} unreachable")
    tracker.finish_parent()

    console, worker_log = capfd.readouterr(), Path(log_path).read_text()
    assert "worker error: TrialError" in worker_log  # the failing trial did fail, and said so
    for where, text in (("stdout", console.out), ("stderr", console.err), ("worker log", worker_log)):
        assert SECRET not in text, f"{where}: {text}"
        assert "View run" not in text, where
    run = tracking_client(spec.tracking_uri).get_run(requests[1].run_id)
    assert SECRET not in run.data.tags[schema.FAILURE_TAG] and run.data.tags[schema.STATUS_TAG] == schema.FAILED
    assert tracking_client(spec.tracking_uri).get_run(requests[0].run_id).data.tags[schema.STATUS_TAG] == "completed"
