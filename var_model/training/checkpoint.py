"""Atomic checkpoints of a trial: model, optimiser, schedule, RNG states, data position.

A checkpoint is written to a temporary file in the same directory, flushed to disk, then
moved over the old one with `os.replace` (atomic on POSIX), so a crash mid-write leaves the
previous checkpoint intact and a reader never sees half a file.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from var_model.errors import CheckpointError

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
REQUIRED_KEYS = (
    "format", "step", "model", "optimizer", "schedule", "rng", "data_position", "trial_config",
)


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write `state` (which must hold REQUIRED_KEYS except `format`) atomically to `path`."""
    path = Path(path)
    missing = [key for key in REQUIRED_KEYS if key != "format" and key not in state]
    if missing:
        raise CheckpointError(f"checkpoint state lacks {missing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as handle:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; CheckpointError if it is unusable."""
    path = Path(path)
    try:
        # weights_only=False: the state holds numpy RNG states and plain dicts we wrote.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(error).__name__}: {error})") from error
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a dict")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; was it written by run_trial?")
    if state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {state['format']}; this code reads {CHECKPOINT_FORMAT}"
        )
    return state


def capture_rng_state(device: torch.device) -> dict[str, Any]:
    """The global RNG states the model uses (class dropout and drop-path draw from torch's
    global generator), so a resumed run draws the same numbers as an uninterrupted one."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
