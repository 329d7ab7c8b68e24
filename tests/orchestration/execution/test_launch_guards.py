"""What a launch refuses, in one line and before Ray starts: read-only storage, an unreachable
tracking server, a study that would mix token caches; and how a trial failure is told (its
cause, not Ray's header). None of these start Ray."""

import http.server
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from ray.exceptions import RayTaskError

from analysis import mlflow_schema as schema
from orchestration.cli import main, without_credentials
from orchestration.execution.failures import FAILURE_FILE, failure_line, record_failure
from orchestration.execution.study_checks import cache_identity, check_token_cache
from orchestration.execution.study_lock import StorageNotWritableError, StudyLock
from orchestration.study.loading import load_study
from orchestration.study.trials import expand
from orchestration.tracking.server_check import TrackingServerError, check_tracking_server
from orchestration.tracking.study_runs import StudyTracker, git_revision
from var_model.errors import CheckpointError, ConfigError, TrialError

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")
SECRET_URI = "http://bob:hunter2@127.0.0.1:{port}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod 0o500")
def test_read_only_storage_is_one_line_naming_the_path(tmp_path, capsys):
    storage = tmp_path / "read_only"
    storage.mkdir()
    storage.chmod(0o500)
    try:
        with pytest.raises(StorageNotWritableError, match=rf"storage {storage} is not writable .*--set storage="):
            StudyLock(str(storage), "tiny_test").__enter__()
        assert main(["launch", TINY, "--set", f"storage={storage}"]) == 2
    finally:
        storage.chmod(0o700)
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"storage {storage} is not writable" in error and "Traceback" not in error


def test_storage_that_cannot_hold_a_folder_is_the_same_one_line(tmp_path):
    # Runs as root too (where chmod does not bite): a file where the storage folder should be.
    storage = tmp_path / "a_file"
    storage.write_text("not a folder")
    with pytest.raises(StorageNotWritableError, match=rf"storage {storage} is not writable \(.*\); give a writable"):
        StudyLock(str(storage), "tiny_test").__enter__()


def test_a_refused_connection_fails_at_once_without_the_credentials():
    port = _free_port()
    started = time.monotonic()
    with pytest.raises(TrackingServerError, match=rf"tracking server at http://127\.0\.0\.1:{port} ") as caught:
        check_tracking_server(SECRET_URI.format(port=port))
    assert time.monotonic() - started < 5 and "hunter2" not in str(caught.value) and "bob" not in str(caught.value)


def test_a_server_that_never_answers_fails_within_the_timeout():
    with socket.socket() as listening:  # accepts connections (the backlog) but never replies
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        started = time.monotonic()
        with pytest.raises(TrackingServerError, match=r"no answer within 1 s"):
            check_tracking_server(SECRET_URI.format(port=listening.getsockname()[1]), timeout_seconds=1.0)
        assert time.monotonic() - started < 5


def test_any_http_answer_is_a_server_and_local_stores_are_not_checked():
    class Unauthorized(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check_tracking_server(SECRET_URI.format(port=server.server_address[1]))  # 401: it is there
    finally:
        server.shutdown()
    check_tracking_server("sqlite:////nowhere/mlflow.db")


def test_launch_with_an_unreachable_server_is_one_line_in_seconds(tmp_path, capsys):
    uri = SECRET_URI.format(port=_free_port())
    started = time.monotonic()
    assert main(["launch", TINY, "--set", f"storage={tmp_path}", "--set", f"tracking_uri={uri}"]) == 2
    assert time.monotonic() - started < 30
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "cannot reach the MLflow tracking server at http://127.0.0.1" in error
    assert "hunter2" not in error and not Path(tmp_path, ".launch.lock").exists()  # refused before the lock


def test_printed_commands_and_errors_lose_credentials():
    assert without_credentials("--set tracking_uri=http://bob:hunter2@mlflow:5000/x") == (
        "--set tracking_uri=http://mlflow:5000/x"
    )
    assert (
        without_credentials("sqlite:////tmp/a@b.db and model.depths=[2,4]")
        == "sqlite:////tmp/a@b.db and model.depths=[2,4]"
    )


def test_a_trial_failure_is_told_by_its_cause_and_where_its_traceback_is(tmp_path):
    traceback_text = "ray::trial d2-b16-s0 (pid=1, ip=127.0.0.1)\nTraceback ...\nCheckpointError: truncated"
    error = RayTaskError("trial d2-b16-s0", traceback_text, CheckpointError("checkpoint.pt is truncated\nhint"))
    error = error.as_instanceof_cause()  # what ray.get raises: RayTaskError(CheckpointError)
    assert failure_line(error) == "CheckpointError: checkpoint.pt is truncated"
    line = record_failure(error, str(tmp_path))
    assert line.startswith("CheckpointError: checkpoint.pt is truncated (traceback: ")
    assert str(tmp_path / FAILURE_FILE) in line and schema.FAILURE_TAG in line
    written = (tmp_path / FAILURE_FILE).read_text()
    assert "CheckpointError: truncated" in written and "\x1b[" not in written  # the remote traceback, no colours
    assert failure_line(ValueError("plain")) == "ValueError: plain"
    # a wrapper that carries the trial's traceback in its message (the task's redacted re-raise)
    wrapped = TrialError("trial d2 failed: Traceback (most recent call last):\n  File ...\nValueError: a bug")
    assert failure_line(wrapped) == "ValueError: a bug"


def test_a_study_never_mixes_token_caches(tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}"])
    tracker = StudyTracker(spec)
    tracker.start_parent()
    first, second, third = expand(spec)[:3]
    revision = git_revision()
    finished, checkpointed, fresh = (tracker.create_trial_run(trial, revision) for trial in (first, second, third))
    tracker.client.set_tag(finished, schema.TOKEN_CACHE_TAG, "tokens-aaa")
    tracker.client.set_tag(finished, schema.STATUS_TAG, schema.COMPLETED)
    tracker.client.set_tag(checkpointed, schema.TOKEN_CACHE_TAG, "tokens-aaa")
    tracker.client.set_tag(checkpointed, schema.CHECKPOINT_STEP_TAG, "3")
    tracker.client.set_tag(fresh, schema.TOKEN_CACHE_TAG, "tokens-aaa")  # submitted, never trained: no mix
    check_token_cache(spec, tracker.trial_runs(), "tokens-aaa")
    trained = ", ".join(sorted([first.key, second.key]))
    with pytest.raises(ConfigError, match=rf"trials {trained} trained on token cache tokens-aaa, but .* tokens-bbb"):
        check_token_cache(spec, tracker.trial_runs(), "tokens-bbb")
    assert cache_identity({"cache_path": "/s/tokens-1"}) == "/s/tokens-1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
