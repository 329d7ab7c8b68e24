"""var_model/files.py: atomic writes (whole or not at all, fsynced, unique temporaries) and hashes."""

import hashlib
import json
import os

import pytest

from var_model.files import (
    HASH_CHUNK_BYTES,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    json_sha256,
    temporary_sibling,
    write_temporary,
)


def _leftovers(directory):
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(".tmp"))


def test_atomic_write_text_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    assert atomic_write_text(path, "new ü") == path
    assert path.read_text(encoding="utf-8") == "new ü" and _leftovers(tmp_path) == []


def test_a_writer_that_raises_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"previous")

    def half_then_crash(handle):
        handle.write(b"half a file")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_crash)
    assert path.read_bytes() == b"previous" and _leftovers(tmp_path) == []


def test_the_temporary_is_fsynced_before_the_move(tmp_path, monkeypatch):
    path = tmp_path / "grid.png"
    synced = []
    real_fsync = os.fsync

    def recording_fsync(descriptor):
        synced.append(path.exists())  # not yet in place when it is synced
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write(path, lambda handle: handle.write(b"png"))
    assert synced == [False] and path.read_bytes() == b"png"


def test_temporaries_are_hidden_siblings_unique_per_process_and_call(tmp_path):
    path = tmp_path / "sub" / "checkpoint.pt"
    first, second = temporary_sibling(path), temporary_sibling(path)
    assert first != second and first.parent == second.parent == path.parent
    assert first.name.startswith(f".checkpoint.pt.{os.getpid()}.") and first.suffix == ".tmp"


def test_write_temporary_leaves_the_target_alone_for_the_caller_to_move(tmp_path):
    path = tmp_path / "step_8.pt"
    temporary = write_temporary(path, lambda handle: handle.write(b"fork"))
    assert not path.exists() and temporary.read_bytes() == b"fork" and temporary.parent == tmp_path
    os.link(temporary, path)
    assert path.read_bytes() == b"fork"


def test_written_files_get_the_umask_mode_not_a_private_one(tmp_path):
    # on shared storage other users read checkpoints and results: a 0600 temporary would lock them out
    umask = os.umask(0)
    os.umask(umask)
    path = atomic_write_text(tmp_path / "result.json", "{}")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_json_sorts_keys(tmp_path):
    path = atomic_write_json(tmp_path / "record.json", {"step": 8, "budget_value": 1.0})
    assert path.read_text(encoding="utf-8") == json.dumps({"budget_value": 1.0, "step": 8}, indent=2)


def test_file_sha256_reads_a_file_larger_than_a_chunk(tmp_path):
    data = bytes(range(256)) * (HASH_CHUNK_BYTES // 256 * 2 + 3)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(path)) == file_sha256(path)


def test_json_sha256_ignores_key_order_and_keeps_its_digest():
    # the digest keys token caches and tokenizers on disk: a change of encoding would orphan them
    value = {"b": [1, 2.5, "x"], "a": None}
    assert json_sha256(value) == json_sha256({"a": None, "b": [1, 2.5, "x"]})
    assert json_sha256(value) == "05147f4c034266888060ee06fae0abe784ce883eb3b125b981d3fd9d4db2c568"
