"""Files written whole or not at all, and content hashes: the one helper for each job.

An atomic write puts the bytes in a temporary file beside the target (the same directory, so
the same filesystem, where `os.replace` is atomic on POSIX), named `.<name>.<pid>.<random>.tmp`
(hidden, and unique per process and per call: concurrent writers never share one), flushes and
fsyncs it, then moves it over the target. A crash mid-write leaves the previous file intact (at
worst a stray `.tmp` beside it), and a reader never sees half a file. A write that raises
removes its temporary file. Nothing here creates the target's directory: the caller does.

    atomic_write_text(path, text)
    atomic_write(path, lambda handle: torch.save(state, handle))   # any writer of a binary handle
    temporary = write_temporary(path, write)   # fsynced, not yet in place: the caller moves it
    file_sha256(path), json_sha256(value)

No torch here: orchestration and analysis may use it without loading torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

HASH_CHUNK_BYTES = 1 << 20  # files hashed here can be gigabytes (checkpoints)


def temporary_sibling(path: str | os.PathLike[str]) -> Path:
    """A fresh hidden name beside `path`, unique per process and per call."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_temporary(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call `write(handle)` on a new temporary file beside `path`, flush and fsync it, and return
    the temporary file's path: the caller moves it into place (`os.replace` over an old file, or
    `os.link` where none may exist yet) and removes it if it does not. If `write` raises, the
    temporary file is removed."""
    temporary = temporary_sibling(path)
    try:
        with temporary.open("xb") as handle:  # "x": never reuse a file another writer left
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Write `path` atomically with `write(handle)` (see the module docstring); return `path`."""
    path = Path(path)
    temporary = write_temporary(path, write)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode(encoding)))


def atomic_write_json(path: str | os.PathLike[str], value: Any, indent: int = 2) -> Path:
    """`value` as JSON with sorted keys (a stable order: rewrites give small diffs)."""
    return atomic_write_text(path, json.dumps(value, indent=indent, sort_keys=True))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def json_sha256(value: Any) -> str:
    """The sha256 of `value` as JSON with sorted keys: a content key for a mapping of identities."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
