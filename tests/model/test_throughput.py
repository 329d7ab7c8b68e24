"""Throughput files: saved atomically, one record per key, read back with interpolation over
depth, and clear errors for another device or a malformed file."""

from __future__ import annotations

import json

import pytest
import torch

from var_model.errors import ConfigError
from var_model.throughput import (
    THROUGHPUT_PRECISIONS,
    ThroughputRecord,
    ThroughputTable,
    interpolate_over_depth,
    save_record,
    throughput_precision,
)
from var_model.training.config_choices import PRECISIONS

DEVICE = "NVIDIA H200"


def _record(depth: int, flops: float, micro_batch: int = 32, device_name: str = DEVICE, **fields) -> ThroughputRecord:
    values = {
        "device_name": device_name,
        "depth": depth,
        "image_size": 256,
        "precision": "bfloat16",
        "compile": True,
        "attention": "flex",
        "micro_batch": micro_batch,
        "activation_checkpointing": False,
        "flops_per_second": flops,
        "images_per_second": flops / 1e12,
    }
    values.update(fields)
    return ThroughputRecord(**values)


def _lookup(table: ThroughputTable, depth: int, device_name: str = DEVICE, **fields) -> float:
    options = {"precision": "bfloat16", "compile": True, "attention": "flex"}
    options.update(fields)
    return table.flops_per_second(device_name, depth, **options)


def test_save_then_load_round_trips_and_replaces_the_same_key(tmp_path):
    path = tmp_path / "throughput.json"
    save_record(path, _record(16, 3e14))
    save_record(path, _record(20, 4e14))
    save_record(path, _record(16, 3.5e14))  # a re-measurement replaces the old record
    table = ThroughputTable.load(path)
    assert sorted((r.depth, r.flops_per_second) for r in table.records) == [(16, 3.5e14), (20, 4e14)]
    assert [p.name for p in tmp_path.iterdir()] == ["throughput.json"]  # no temporary file left
    assert json.loads(path.read_text())["format"] == "varscale-throughput"


def test_depths_between_measurements_are_linear_and_clamped_outside(tmp_path):
    path = tmp_path / "throughput.json"
    for depth, flops in ((16, 3e14), (24, 5e14)):
        save_record(path, _record(depth, flops))
    table = ThroughputTable.load(path)
    assert _lookup(table, 20) == pytest.approx(4e14)
    assert _lookup(table, 18) == pytest.approx(3.5e14)
    assert _lookup(table, 16) == pytest.approx(3e14)
    assert _lookup(table, 8) == pytest.approx(3e14)
    assert _lookup(table, 30) == pytest.approx(5e14)
    assert interpolate_over_depth({4: 1.0}, 9) == 1.0


def test_micro_batch_is_matched_or_the_fastest_is_taken(tmp_path):
    path = tmp_path / "throughput.json"
    save_record(path, _record(16, 2e14, micro_batch=8))
    save_record(path, _record(16, 3e14, micro_batch=32))
    table = ThroughputTable.load(path)
    assert _lookup(table, 16, micro_batch=8) == pytest.approx(2e14)
    assert _lookup(table, 16) == pytest.approx(3e14)
    with pytest.raises(ConfigError, match=r"no measurement on 'NVIDIA H200'.*'micro_batch': 4"):
        _lookup(table, 16, micro_batch=4)
    with pytest.raises(ConfigError, match=r"'attention': 'sdpa'"):
        _lookup(table, 16, attention="sdpa")


def test_a_file_of_another_device_names_both_devices(tmp_path):
    path = tmp_path / "throughput.json"
    save_record(path, _record(16, 3e14, device_name="NVIDIA A100-SXM4-80GB"))
    with pytest.raises(ConfigError, match=r"measured on \['NVIDIA A100-SXM4-80GB'\], not on 'NVIDIA H200'"):
        _lookup(ThroughputTable.load(path), 16)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.pop("depth"), r"records\[0\]: field 'depth' is missing"),
        (lambda r: r.update(flops_per_second="fast"), r"field 'flops_per_second' = 'fast' is not allowed"),
        (lambda r: r.update(compile="yes"), r"field 'compile' = 'yes' is not allowed: true or false"),
        (lambda r: r.update(micro_batch=0), r"field 'micro_batch' = 0 is not allowed"),
        (lambda r: r.update(speed=1), r"unknown field\(s\) \['speed'\]"),
    ],
    ids=["missing", "not-a-number", "not-a-bool", "zero", "unknown"],
)
def test_a_malformed_record_names_the_field(tmp_path, change, message):
    path = tmp_path / "throughput.json"
    save_record(path, _record(16, 3e14))
    data = json.loads(path.read_text())
    change(data["records"][0])
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        ThroughputTable.load(path)


def test_a_malformed_file_is_a_clear_error(tmp_path):
    path = tmp_path / "throughput.json"
    with pytest.raises(ConfigError, match="does not exist"):
        ThroughputTable.load(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        ThroughputTable.load(path)
    path.write_text(json.dumps({"format": "varscale-throughput", "version": 1, "records": {}}))
    with pytest.raises(ConfigError, match="field 'records' must be a list"):
        ThroughputTable.load(path)
    path.write_text(json.dumps({"records": []}))
    with pytest.raises(ConfigError, match="field 'format'/'version'"):
        ThroughputTable.load(path)
    with pytest.raises(ConfigError, match="field 'format'"):
        save_record(path, _record(16, 3e14))  # never overwrite a file it cannot read


def test_every_trial_precision_names_the_torch_dtype_its_records_carry():
    assert set(THROUGHPUT_PRECISIONS) == set(PRECISIONS)
    assert throughput_precision("bf16") == "bfloat16" and throughput_precision("fp32") == "float32"
    for name in PRECISIONS:
        assert isinstance(getattr(torch, throughput_precision(name)), torch.dtype)
    with pytest.raises(ConfigError, match=r"precision is 'bfloat16'; allowed: bf16, fp16, fp32"):
        throughput_precision("bfloat16")
