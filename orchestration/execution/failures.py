"""What the console says when a trial fails: the real cause in one line, and where the rest is.

Ray wraps a task's exception in a RayTaskError whose text starts with Ray's header
(`ray::trial d2-b16-s0 (pid=..., ip=...)`) and then the remote traceback; printing its first
line told a user only that *something* failed (a probe saw `RayTaskError(CheckpointError):
ray::trial ...` for a truncated checkpoint). The exception the trial raised travels as the
error's `cause`: its type and message are the line to print. The full remote traceback goes to
a file in the trial's folder and to the run's `varscale.failure` tag (its tail).
"""

from __future__ import annotations

import re
from pathlib import Path

from ray.exceptions import RayTaskError

from analysis import mlflow_schema as schema

FAILURE_FILE = "failure.txt"  # in the trial's output folder: the full text of its last failure
TRACEBACK_HEADER = "Traceback (most recent call last)"
TERMINAL_COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours its task header for terminals


def failure_cause(error: BaseException) -> BaseException:
    """The exception the trial itself raised (Ray may nest task errors), else `error`."""
    cause = error
    while isinstance(cause, RayTaskError) and cause.cause is not None and cause.cause is not cause:
        cause = cause.cause
    return cause


def failure_line(error: BaseException) -> str:
    """'CheckpointError: checkpoint ... is truncated': the cause's type and first message line."""
    cause = failure_cause(error)
    message = [line for line in str(cause).strip().splitlines() if line.strip()]
    if any(TRACEBACK_HEADER in line for line in message):
        return message[-1].strip()  # a wrapper that carries a traceback: its last line is the cause
    return f"{type(cause).__name__}: {message[0]}" if message else type(cause).__name__


def record_failure(error: BaseException, output_dir: str) -> str:
    """Write the failure's full text to the trial's folder; returns the one-line report with
    where the traceback is."""
    path = Path(output_dir, FAILURE_FILE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(TERMINAL_COLOURS.sub("", f"{type(error).__name__}: {error}\n"))
        where = f"traceback: {path}, MLflow tag {schema.FAILURE_TAG}"
    except OSError:  # a storage that refuses the file must not hide the cause itself
        where = f"traceback: MLflow tag {schema.FAILURE_TAG}"
    return f"{failure_line(error)} ({where})"
