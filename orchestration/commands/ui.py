"""`varscale ui`: the MLflow UI for a study's store, on 127.0.0.1 by default.

Lean settings, measured (docs/ARCHITECTURE.md): with defaults `mlflow ui` ran 17 processes
(3.1 GB) and was healthy after 80 s; with one worker and job execution off, 2 processes,
0.5 GB, 21 s.

It prints the address of the study's runs view (tracking.ui_urls: MLflow 3.x would open its
GenAI view otherwise). The server runs in a process group of its own, and SIGTERM or SIGINT
(Ctrl-C) stops the whole group: stopped with SIGTERM, a plain child left its server orphaned.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from analysis.mlflow_schema import redact_uri
from orchestration.tracking.clients import tracking_client
from orchestration.tracking.study_runs import sqlite_path
from orchestration.tracking.ui_urls import CHART_VIEW, MACHINE_LEARNING_WORKFLOW, WORKFLOW_PARAMETER, runs_view_url

LOCAL_STORES = ("sqlite:", "postgresql", "mysql")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STOP_GRACE_SECONDS = 10.0  # then the group is killed


class _StopRequested(Exception):
    """A stop signal arrived (raised from the handler, so the wait returns at once)."""


def ui_command(tracking_uri: str, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    mlflow = Path(sys.executable).with_name("mlflow")
    executable = str(mlflow) if mlflow.exists() else "mlflow"
    return [
        executable,
        "ui",
        "--backend-store-uri",
        tracking_uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def ui_environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return environment


def study_experiment_id(tracking_uri: str, study: str | None) -> str | None:
    """The study's experiment id, without creating a store that does not exist yet."""
    database = sqlite_path(tracking_uri)
    if study is None or (database and not Path(database).exists()):
        return None
    experiment = tracking_client(tracking_uri).get_experiment_by_name(study)
    return experiment.experiment_id if experiment is not None else None


def where_to_look(server_url: str, experiment_id: str | None) -> list[str]:
    """The lines that say which page to open."""
    if experiment_id is None:
        return [f"  the study has no runs yet; its experiment will be listed at {server_url}"]
    return [
        f"  runs:   {runs_view_url(server_url, experiment_id)}",
        f"  charts: {runs_view_url(server_url, experiment_id, CHART_VIEW)}",
    ]


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL after the grace period; the group is
    signalled again after its leader exits, for workers that outlive it."""
    for stop_signal, wait_seconds in ((signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGKILL, STOP_GRACE_SECONDS)):
        try:
            os.killpg(process.pid, stop_signal)
        except ProcessLookupError:
            return  # the whole group is gone
        try:
            process.wait(timeout=wait_seconds)
        except subprocess.TimeoutExpired:
            continue


def serve(command: list[str], environment: dict[str, str]) -> int:
    """Run the server until it exits or a stop signal arrives; never leaves it running."""

    def request_stop(signum, frame):
        raise _StopRequested(signum)

    process = subprocess.Popen(command, env=environment, start_new_session=True)
    previous = {stop_signal: signal.signal(stop_signal, request_stop) for stop_signal in STOP_SIGNALS}
    try:
        return process.wait()
    except (_StopRequested, KeyboardInterrupt):
        return 0
    finally:
        # ignore a second signal while stopping: the group must not be left half-stopped
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, signal.SIG_IGN)
        _stop_group(process)
        for stop_signal, handler in previous.items():
            signal.signal(stop_signal, handler)


def run_ui(tracking_uri: str, host: str = "127.0.0.1", port: int = 5000, study: str | None = None) -> int:
    if not tracking_uri.startswith(LOCAL_STORES):
        # no lookup on the server: an unreachable one would hold this command for minutes
        print(
            f"the study logs to a tracking server ({redact_uri(tracking_uri)}): open it in a browser instead, "
            f"experiment {study or '(the study name)'}, with ?{WORKFLOW_PARAMETER}={MACHINE_LEARNING_WORKFLOW}"
        )
        return 0
    if host not in ("127.0.0.1", "localhost"):
        print(f"warning: serving on {host}: anyone who can reach this host can read the runs")
    server_url = f"http://{host}:{port}"
    print(f"MLflow UI on {server_url} for {redact_uri(tracking_uri)} (Ctrl-C stops it)")
    print("\n".join(where_to_look(server_url, study_experiment_id(tracking_uri, study))), flush=True)
    return serve(ui_command(tracking_uri, host, port), ui_environment())


def runs_view_address(tracking_uri: str, study: str, host: str = "127.0.0.1", port: int = 5000) -> str:
    """Where `varscale ui` will show the study's runs (for the demo's closing lines)."""
    experiment_id = study_experiment_id(tracking_uri, study) if tracking_uri.startswith(LOCAL_STORES) else None
    server_url = f"http://{host}:{port}" if tracking_uri.startswith(LOCAL_STORES) else redact_uri(tracking_uri)
    return runs_view_url(server_url, experiment_id) if experiment_id is not None else server_url
