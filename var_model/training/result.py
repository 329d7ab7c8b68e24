"""`TrialResult`: what `run_trial` returns, and what it leaves in `output_dir/result.json`."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from var_model.errors import TrialError
from var_model.files import atomic_write_json

TRIAL_STATUSES = ("completed", "diverged")
RESULT_FILE = "result.json"
# A completed trial's final test loss against the frequency baseline of its token cache
# (var_model.tokenizer.baseline: the unigram, the acceptance bar of a trial). A trial above it
# learnt nothing beyond token frequencies: it completed, but it is no point of a scaling law,
# so it carries the flag (1.0, else 0.0) and the analysis leaves it out of fits.
UNIGRAM_BASELINE_METRIC = "final_unigram_test_loss_avg"
ABOVE_BASELINE_METRIC = "final_above_unigram_baseline"


@dataclass(frozen=True)
class TrialResult:
    """status: "completed" or "diverged". metrics: the final metrics (`final_test_loss_avg`,
    `final_test_loss_last`, `final_test_error_avg`, `final_test_error_last`, `final_images`,
    `final_tokens`, `final_flops`, `final_test_loss_scale_KK`, and UNIGRAM_BASELINE_METRIC /
    ABOVE_BASELINE_METRIC; a diverged trial has the counters and `final_train_loss` only).
    steps: optimiser steps taken. checkpoint_path: the last checkpoint written (None if none).
    message: why a trial diverged, or that a completed one stayed above the unigram baseline."""

    status: str
    metrics: dict[str, float]
    steps: int
    checkpoint_path: str | None
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in TRIAL_STATUSES:
            raise TrialError(f"status is {self.status!r}; allowed: {', '.join(TRIAL_STATUSES)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "metrics": {key: _encode(value) for key, value in self.metrics.items()},
            "steps": self.steps,
            "checkpoint_path": self.checkpoint_path,
            "message": self.message,
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialResult":
        return cls(
            status=data["status"],
            metrics={key: float(value) for key, value in data["metrics"].items()},
            steps=int(data["steps"]),
            checkpoint_path=data.get("checkpoint_path"),
            message=data.get("message", ""),
            info=data.get("info", {}),
        )

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write result.json atomically (var_model/files.py)."""
        return atomic_write_json(Path(directory) / RESULT_FILE, self.to_dict())

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> "TrialResult | None":
        path = Path(directory) / RESULT_FILE
        if not path.exists():
            return None
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _encode(value: float) -> float | str:
    # json.dumps writes NaN, which strict JSON readers refuse; keep it readable as a string
    # that float() parses back.
    return value if math.isfinite(value) else str(value)


def with_baseline_flag(final: dict[str, float], baseline: float) -> tuple[dict[str, float], str]:
    """A completed trial's finals with the unigram `baseline` of its cache and the flag of a
    final test loss not below it, and the message that says so ("" when below). The baseline
    scores the whole test split, the trial its first eval_images rows: close either way, and
    the flag is for trials well above."""
    loss = final["final_test_loss_avg"]
    above = not loss < baseline  # a NaN loss learnt nothing either
    final = {**final, UNIGRAM_BASELINE_METRIC: baseline, ABOVE_BASELINE_METRIC: float(above)}
    if not above:
        return final, ""
    return final, (
        f"final test loss {loss:.4g} is not below the token cache's unigram baseline {baseline:.4g} (token "
        "frequencies alone): the trial learnt nothing beyond them, so fits leave it out; train it longer "
        "or check its lr"
    )
