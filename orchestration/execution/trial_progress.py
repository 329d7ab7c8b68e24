"""What the progress display knows of one trial: its plan, and what its progress file says.

Each running trial's callback rewrites `<output_dir>/progress.json` at every train log
(analysis.mlflow_schema.PROGRESS_FILE); a missing or half-written file means no data yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from analysis.mlflow_schema import PROGRESS_FILE


@dataclass(frozen=True)
class ProgressTrial:
    key: str
    flops: float  # what the trial runs: the ETA's fallback weight before any trial has a rate
    steps: int
    group: str  # trials of one group run at one speed (same depth and batch size)
    directory: str  # the trial's output folder, where its progress file is
    batch_size: int = 0  # images per step: with the file's images/s, a rate from one read (0: unknown)


@dataclass(frozen=True)
class TrialProgress:
    step: int
    steps: int
    train_loss: float
    images_per_second: float
    time: float  # unix seconds, the trial's clock


def read_progress(directory: str) -> TrialProgress | None:
    try:
        data = json.loads(Path(directory, PROGRESS_FILE).read_text())
        return TrialProgress(
            int(data["step"]),
            int(data["steps"]),
            float(data["train_loss"]),
            float(data["images_per_second"]),
            float(data["time"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not written yet, or caught mid-write by a non-atomic writer
