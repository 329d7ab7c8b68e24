"""`varscale ui`: the MLflow UI for a study's store, on 127.0.0.1 by default.

Lean settings, measured (docs/ARCHITECTURE.md): with defaults `mlflow ui` ran 17 processes
(3.1 GB) and was healthy after 80 s; with one worker and job execution off, 2 processes,
0.5 GB, 21 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from analysis.mlflow_schema import redact_uri


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


def run_ui(tracking_uri: str, host: str = "127.0.0.1", port: int = 5000) -> int:
    if (
        not tracking_uri.startswith("sqlite:")
        and not tracking_uri.startswith("postgresql")
        and not tracking_uri.startswith("mysql")
    ):
        print(f"the study logs to a tracking server ({redact_uri(tracking_uri)}): open it in a browser instead")
        return 0
    if host not in ("127.0.0.1", "localhost"):
        print(f"warning: serving on {host}: anyone who can reach this host can read the runs")
    print(f"MLflow UI on http://{host}:{port} for {redact_uri(tracking_uri)} (Ctrl-C stops it)")
    try:
        return subprocess.call(ui_command(tracking_uri, host, port), env=ui_environment())
    except KeyboardInterrupt:
        return 0
