"""`varscale ui`: the runs-view addresses it prints, and that SIGTERM or SIGINT stops its whole
`mlflow ui` process tree (a plain child was left running, orphaned, after SIGTERM)."""

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from orchestration.tracking.ui_urls import CHART_VIEW, run_url, runs_view_url

TINY = str(Path(__file__).parent / "fixtures" / "tiny_study.yaml")


def test_urls_open_the_runs_view_not_the_genai_view():
    assert (
        runs_view_url("http://127.0.0.1:5000/", "7")
        == "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
    )
    assert runs_view_url("http://h:1", "7", CHART_VIEW).endswith(
        "runs?workflowType=machine_learning&compareRunsMode=CHART"
    )
    assert (
        run_url("http://user:secret@h:1", "7", "abc")
        == "http://h:1/#/experiments/7/runs/abc?workflowType=machine_learning"
    )


def test_the_runs_address_never_creates_a_store_nor_shows_a_password(tmp_path):
    from orchestration.commands.ui import runs_view_address

    missing = f"sqlite:///{tmp_path}/mlflow.db"
    assert runs_view_address(missing, "study") == "http://127.0.0.1:5000" and not (tmp_path / "mlflow.db").exists()
    assert runs_view_address("http://user:secret@mlflow.example.org:5000", "study") == "http://mlflow.example.org:5000"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serving(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _start_ui(tmp_path, port: int, through_cli: bool) -> tuple[subprocess.Popen, psutil.Process]:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # run_ui itself, or the whole CLI (which parses the study file)
    command = [sys.executable, "-c", f"from orchestration.commands.ui import run_ui; run_ui({uri!r}, port={port})"]
    if through_cli:
        command = [sys.executable, "-m", "orchestration.cli", "ui", TINY, "--set", f"storage={tmp_path}"]
        command += ["--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, psutil.Process(process.pid)


def _stop_and_check(process, parent, stop_signal, wait_for) -> None:
    deadline = time.monotonic() + 150
    while not wait_for(parent) and time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.5)
    server = parent.children(recursive=True)
    assert server, "the mlflow ui child never started"
    process.send_signal(stop_signal)
    assert process.wait(timeout=60) == 0
    output = process.stdout.read()
    _, alive = psutil.wait_procs(server, timeout=30)
    assert not alive, f"left running after {stop_signal.name}: {[p.cmdline() for p in alive]}\n{output}"


@pytest.mark.slow  # 20-35 s here: any orchestration import loads torch (var_model's package), then mlflow starts
def test_sigterm_leaves_no_server_process(tmp_path):
    process, parent = _start_ui(tmp_path, _free_port(), through_cli=False)
    try:
        # as soon as the server's process exists (the server need not be up to be orphaned)
        _stop_and_check(process, parent, signal.SIGTERM, lambda parent: bool(parent.children(recursive=True)))
    finally:
        process.kill()


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_serving_ui_stops_with_all_its_workers(tmp_path, stop_signal):
    port = _free_port()
    process, parent = _start_ui(tmp_path, port, through_cli=True)
    try:
        _stop_and_check(process, parent, stop_signal, lambda parent: _serving(port))
        assert not _serving(port)
    finally:
        process.kill()
