"""Atomic checkpoints of a trial: model, optimiser, schedule, RNG states, data position.

A checkpoint is written to a temporary file in the same directory, flushed to disk, read back
(structure and keys, memory-mapped: no tensor bytes copied), and only then moved into place with
`os.replace` (atomic on POSIX; var_model/files.py), so a crash mid-write leaves the previous
checkpoint intact and a reader never sees half a file. The checkpoint it replaces is kept as
`checkpoint.previous.pt`: a file damaged after it was written (a probe truncated one to half
its bytes, which failed its trial on every relaunch) is moved aside to `<name>.unreadable` by
`newest_readable_checkpoint`, and the trial resumes from the previous one, or from step 0 when
neither reads, saying so. Bit flips inside tensor data are not detected (no per-save hash: at
the paper's sizes it would cost a pass over tens of GB per save and per load).

Checkpoints are read as data only (`torch.load(weights_only=True)`): trial checkpoints sit on
storage that every node and several people write to, and a pickle that may name any callable
would let whoever writes one file run code on every machine that resumes or samples from it.
So everything in a checkpoint is a tensor, a number, a string, a list or a dict: the numpy and
Python RNG states are stored as such (format 2). Format-1 files (numpy's state as an ndarray)
still load, through a narrow allowlist of numpy's array reconstruction only, and are checked
to hold exactly an MT19937 state before use.

The model and optimizer states are unsharded, whatever the layout that wrote them (one
process, DDP or FSDP; see training/parallel.py), so any layout resumes any other's file. The
optimizer state names parameters by their names; files written before FSDP support number
them by position, as `optimizer.state_dict()` does, and still load (the trainer converts them).
"""

from __future__ import annotations

import os
import pickle
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from var_model.errors import CheckpointError, CheckpointWarning, UnreadableCheckpointError
from var_model.files import write_temporary
from var_model.training.distributed import DistributedContext

CHECKPOINT_FILE = "checkpoint.pt"
PREVIOUS_CHECKPOINT_FILE = "checkpoint.previous.pt"
UNREADABLE_SUFFIX = ".unreadable"
CHECKPOINT_FORMAT = 2
# Format 1 stored numpy's RNG state as a tuple holding a uint32 ndarray. These are the only
# globals such a file needs; they rebuild plain arrays and dtypes and call nothing else.
LEGACY_FORMAT = 1
LEGACY_NUMPY_GLOBALS = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.UInt32DType]
REQUIRED_KEYS = (
    "format",
    "step",
    "model",
    "optimizer",
    "schedule",
    "rng",
    "data_position",
    "trial_config",
)
MT19937_KEY_WORDS = 624


def previous_checkpoint_path(path: str | os.PathLike[str]) -> Path:
    """Where `save_checkpoint` keeps the checkpoint that `path` replaced."""
    return Path(path).with_name(PREVIOUS_CHECKPOINT_FILE)


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write `state` (which must hold REQUIRED_KEYS except `format`) atomically to `path`, once
    the written file reads back; the checkpoint it replaces becomes `previous_checkpoint_path`."""
    path = Path(path)
    temporary = write_temporary_checkpoint(path, state)
    try:
        _check_reads_back(temporary)
        if path.exists():
            # a crash between these two renames leaves only the previous file: resume reads it
            os.replace(path, previous_checkpoint_path(path))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _check_reads_back(path: Path) -> None:
    # memory-mapped: the pickle, the zip directory and every record's place are checked, no
    # tensor bytes are copied (1 GiB of weights: 0.18 s, against 22 s for a full load and 29 s
    # for the save itself, on a busy 2-core box)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise CheckpointError(f"checkpoint just written to {path} does not read back ({error}); not used") from error
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint just written to {path} lacks {missing}; not used")


@dataclass(frozen=True)
class ReadableCheckpoint:
    """What `newest_readable_checkpoint` found: the file and its state (None when no file
    could be read, or none exists), and one line per unreadable file it moved aside."""

    path: Path | None
    state: dict[str, Any] | None
    skipped: tuple[str, ...] = ()


def newest_readable_checkpoint(path: str | os.PathLike[str]) -> ReadableCheckpoint:
    """The checkpoint at `path`, or the previous one if `path` cannot be read. An unreadable
    file (truncated or corrupt) is moved to `<name>.unreadable`, so that the next save does not
    rotate it over the good previous file and a relaunch does not trip on it again. A file that
    reads but is refused (pickled objects, missing keys) is an error, not skipped: it is no
    accident of storage."""
    path = Path(path)
    skipped: list[str] = []
    for candidate in (path, previous_checkpoint_path(path)):
        if not candidate.exists():
            continue
        try:
            return ReadableCheckpoint(candidate, load_checkpoint(candidate), tuple(skipped))
        except UnreadableCheckpointError as error:
            aside = candidate.with_name(candidate.name + UNREADABLE_SUFFIX)
            os.replace(candidate, aside)
            skipped.append(f"{error}; moved to {aside.name}")
    return ReadableCheckpoint(None, None, tuple(skipped))


def readable_checkpoint_on_every_rank(path: str | os.PathLike[str], context: DistributedContext) -> ReadableCheckpoint:
    """`newest_readable_checkpoint` on every rank: rank 0 looks first and moves unreadable
    files aside; after the barrier the other ranks find the file it chose first in line."""
    found = newest_readable_checkpoint(path) if context.is_main else None
    context.barrier()
    return found if found is not None else newest_readable_checkpoint(path)


def fallback_note(found: ReadableCheckpoint, resumed_step: int, context: DistributedContext) -> str:
    """What was skipped and where the trial goes on from, as a CheckpointWarning (worker logs)
    and as the returned line (the trainer puts it in its start info: metrics.jsonl, the run)."""
    outcome = f"resumed from {found.path.name} at step {resumed_step}" if found.path else "restarted from step 0"
    note = f"{'; '.join(found.skipped)}: {outcome}"
    if context.is_main:
        warnings.warn(note, CheckpointWarning, stacklevel=3)
    return note


def write_temporary_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write `state` to a temporary file beside `path`, flushed to disk, and return it: the
    caller moves it into place (over an old file, or only where none exists yet)."""
    path = Path(path)
    missing = [key for key in REQUIRED_KEYS if key != "format" and key not in state]
    if missing:
        raise CheckpointError(f"checkpoint state lacks {missing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_temporary(path, lambda handle: torch.save({"format": CHECKPOINT_FORMAT, **state}, handle))


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` as data only; CheckpointError if it is
    unusable, including one that holds pickled objects (which are never unpickled)."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(LEGACY_NUMPY_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except pickle.UnpicklingError as error:
        raise CheckpointError(_refusal(path, error)) from None
    except Exception as error:  # torch raises several types for truncated or foreign files
        detail = str(error).splitlines()[0] if str(error) else ""
        raise UnreadableCheckpointError(
            f"checkpoint {path} ({path.stat().st_size} bytes) cannot be read ({type(error).__name__}: {detail})"
        ) from error
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a dict")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; was it written by run_trial?")
    if state["format"] == LEGACY_FORMAT:
        state["rng"] = _upgrade_legacy_rng(path, state["rng"])
        state.pop("ranks", None)  # per-rank states came with format 2; rank 0's stream is the one to trust
    elif state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {state['format']}; this code reads {LEGACY_FORMAT} and {CHECKPOINT_FORMAT}"
        )
    return state


def _refusal(path: Path, error: pickle.UnpicklingError) -> str:
    # torch's message is several paragraphs; the line that names the refused global is the one to show
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    detail = named[0] if named else (lines[-1] if lines else type(error).__name__)
    return (
        f"checkpoint {path} holds pickled objects that a data-only load refuses ({detail}); "
        "varscale never unpickles a checkpoint, since that can run arbitrary code. A checkpoint "
        "written by varscale holds only tensors and numbers, so this file is foreign or was "
        "tampered with: delete it to restart the trial from step 0, or point at another checkpoint"
    )


def capture_rng_state(device: torch.device) -> dict[str, Any]:
    """The global RNG states the model uses (class dropout and drop-path draw from torch's
    global generator), so a resumed run draws the same numbers as an uninterrupted one.
    Everything is a tensor, a number or a list, so that a data-only load accepts it."""
    bit_generator, key, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, python_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # uint32 words stored as int64: torch has no general uint32 tensor support on every build
        "numpy": {
            "bit_generator": str(bit_generator),
            "key": torch.from_numpy(key.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": int(version), "state": list(python_state), "gauss": python_gauss},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["bit_generator"],
            numpy_state["key"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _upgrade_legacy_rng(path: Path, rng: Any) -> dict[str, Any]:
    """Format 1 held numpy's state tuple and Python's state tuple; check and convert them."""
    try:
        bit_generator, key, position, has_gauss, cached_gaussian = rng["numpy"]
        version, python_state, python_gauss = rng["python"]
        valid = (
            bit_generator == "MT19937"
            and isinstance(key, np.ndarray)
            and key.dtype == np.uint32
            and key.shape == (MT19937_KEY_WORDS,)
            and isinstance(python_state, tuple)
        )
    except (KeyError, TypeError, ValueError):
        valid = False
    if not valid:
        raise CheckpointError(
            f"checkpoint {path} (format {LEGACY_FORMAT}) holds an RNG state of an "
            "unexpected form; delete it to restart the trial from step 0"
        )
    upgraded = dict(rng)
    upgraded["numpy"] = {
        "bit_generator": bit_generator,
        "key": torch.from_numpy(key.astype(np.int64)),
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }
    upgraded["python"] = {"version": int(version), "state": list(python_state), "gauss": python_gauss}
    return upgraded
