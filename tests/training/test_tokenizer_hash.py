"""A reused tokenizer is checked against the hash the stage recorded when it wrote it: a
tokenizer.pt with flipped bytes is refused (a probe's relaunch built a second token cache from
one and trained on it silently), and the stage names the cache it built or reused."""

from __future__ import annotations

import dataclasses
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from var_model.errors import CheckpointError
from var_model.tokenizer import TokenCache, run_tokenizer_stage
from var_model.tokenizer.stage import TOKENIZER_HASH_FILE

LOCAL_HEADER_BYTES = 30  # a zip local file header before its name and extra field


def _copied_stage(tiny_stage, tmp_path):
    """The session's stage config on a copy of its cache root (the copy may be damaged)."""
    config, _ = tiny_stage
    root = tmp_path / "cache"
    shutil.copytree(config.cache_root, root)
    return dataclasses.replace(config, cache_root=str(root))


def _flip_tensor_bytes(path: Path, count: int = 256) -> None:
    """Invert `count` bytes in the middle of the file's largest tensor record: the file still
    loads (torch checks no checksum), with other weights."""
    with zipfile.ZipFile(path) as archive:
        record = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[record.header_offset + 26 : record.header_offset + 30])
    start = record.header_offset + LOCAL_HEADER_BYTES + name_length + extra_length + record.file_size // 2
    assert record.file_size >= 2 * count
    for offset in range(start - count // 2, start + count // 2):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_reused_tokenizer_with_flipped_bytes_is_refused_with_both_hashes(tiny_stage, tmp_path):
    config = _copied_stage(tiny_stage, tmp_path)
    reused = run_tokenizer_stage(config)
    assert reused.reused_tokenizer and reused.reused_cache
    recorded = (Path(reused.tokenizer_path).parent / TOKENIZER_HASH_FILE).read_text().strip()
    assert recorded == reused.tokenizer_hash

    _flip_tensor_bytes(Path(reused.tokenizer_path))
    caches_before = sorted(path.name for path in Path(config.cache_root).iterdir())
    with pytest.raises(CheckpointError) as refusal:
        run_tokenizer_stage(config)
    message = str(refusal.value)
    assert reused.tokenizer_path in message and recorded in message and "hash to " in message
    assert sorted(path.name for path in Path(config.cache_root).iterdir()) == caches_before  # no new cache


def test_the_stage_result_names_its_cache_as_trials_report_it(tiny_stage):
    _, result = tiny_stage
    values = result.to_dict()
    assert values["cache_key"] == TokenCache.open(result.cache_path, verify=False).key
    assert values["tokenizer_hash"] == result.tokenizer_hash


def test_a_tokenizer_written_before_hashes_were_recorded_is_adopted_with_a_warning(tiny_stage, tmp_path):
    config = _copied_stage(tiny_stage, tmp_path)
    _, original = tiny_stage
    hash_file = Path(config.cache_root) / Path(original.tokenizer_path).parent.name / TOKENIZER_HASH_FILE
    hash_file.unlink()
    with pytest.warns(UserWarning, match="no recorded hash"):
        result = run_tokenizer_stage(config)
    assert hash_file.read_text().strip() == result.tokenizer_hash == original.tokenizer_hash
    assert result.cache_key == original.cache_key
