"""Measured training throughput: a JSON file of `varscale bench --save` records, and its reader.

One record per (device name, depth, image size, precision, compile, attention kernel,
micro-batch, activation checkpointing), holding the achieved FLOP/s (the exact count of
`var_model.counting.flops_per_image`) and images/s. Saving a measurement whose key is already
in the file replaces that record. The file:

    {"format": "varscale-throughput", "version": 1,
     "records": [{"device_name": "NVIDIA H200", "depth": 16, "image_size": 256,
                  "precision": "bfloat16", "compile": true, "attention": "flex",
                  "micro_batch": 32, "activation_checkpointing": false,
                  "flops_per_second": 4.1e14, "images_per_second": 310.2}, ...]}

Depths between the measured ones are interpolated on FLOP/s (which varies slowly with depth,
unlike images/s): linear in depth between the two nearest measured depths, clamped to the
nearest measured depth outside their range.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from var_model.errors import ConfigError
from var_model.files import atomic_write_text

FILE_FORMAT = "varscale-throughput"
FILE_VERSION = 1
KEY_FIELDS = (
    "device_name",
    "depth",
    "image_size",
    "precision",
    "compile",
    "attention",
    "micro_batch",
    "activation_checkpointing",
)
# the JSON type each field must have (bool is checked apart: it is an int subclass in Python)
FIELD_TYPES = {
    "device_name": str,
    "depth": int,
    "image_size": int,
    "precision": str,
    "compile": bool,
    "attention": str,
    "micro_batch": int,
    "activation_checkpointing": bool,
    "flops_per_second": float,
    "images_per_second": float,
}
# A record names its precision by torch dtype name (`varscale bench --dtype`); a trial by
# TrialConfig.precision. The one translation between them:
THROUGHPUT_PRECISIONS = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def throughput_precision(trial_precision: str) -> str:
    """The `precision` of the records that measure a trial of TrialConfig.precision `trial_precision`."""
    if trial_precision not in THROUGHPUT_PRECISIONS:
        raise ConfigError(f"precision is {trial_precision!r}; allowed: {', '.join(THROUGHPUT_PRECISIONS)}")
    return THROUGHPUT_PRECISIONS[trial_precision]


@dataclass(frozen=True)
class ThroughputRecord:
    """One measurement (see the module docstring)."""

    device_name: str
    depth: int
    image_size: int
    precision: str
    compile: bool
    attention: str
    micro_batch: int
    activation_checkpointing: bool
    flops_per_second: float
    images_per_second: float

    @property
    def key(self) -> tuple:
        return tuple(getattr(self, name) for name in KEY_FIELDS)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ThroughputRecord:
        """Validate one JSON record; `where` (file and index) goes into every error."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: a record must be an object; got {type(data).__name__}")
        unknown = sorted(set(data) - set(FIELD_TYPES))
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(FIELD_TYPES)}")
        values = {}
        for name, kind in FIELD_TYPES.items():
            if name not in data:
                raise ConfigError(f"{where}: field {name!r} is missing")
            value = data[name]
            if kind is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
                value = float(value) if ok else value
                allowed = "a positive number"
            elif kind is int:
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
                allowed = "a positive integer"
            elif kind is bool:
                ok, allowed = isinstance(value, bool), "true or false"
            else:
                ok, allowed = isinstance(value, str) and bool(value), "a non-empty string"
            if not ok:
                raise ConfigError(f"{where}: field {name!r} = {value!r} is not allowed: {allowed}")
            values[name] = value
        return cls(**values)


class ThroughputTable:
    """The records of one throughput file, looked up by what a trial will run."""

    def __init__(self, records: list[ThroughputRecord], source: str = "<memory>"):
        self.records = list(records)
        self.source = source

    @classmethod
    def load(cls, path: str | os.PathLike) -> ThroughputTable:
        """Read and validate a throughput file; ConfigError names the file and the bad field."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"throughput file {path} does not exist; write it with `varscale bench --save {path}`"
            ) from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"throughput file {path} is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"throughput file {path}: the top level must be an object with 'records'")
        if data.get("format") != FILE_FORMAT or data.get("version") != FILE_VERSION:
            raise ConfigError(
                f"throughput file {path}: field 'format'/'version' = {data.get('format')!r}/"
                f"{data.get('version')!r}; expected {FILE_FORMAT!r}/{FILE_VERSION}"
            )
        records = data.get("records")
        if not isinstance(records, list):
            raise ConfigError(f"throughput file {path}: field 'records' must be a list; got {records!r}")
        return cls(
            [
                ThroughputRecord.from_dict(record, f"throughput file {path}, records[{index}]")
                for index, record in enumerate(records)
            ],
            source=str(path),
        )

    def device_names(self) -> list[str]:
        return sorted({record.device_name for record in self.records})

    def flops_per_second(
        self,
        device_name: str,
        depth: int,
        *,
        precision: str,
        compile: bool,
        attention: str,
        micro_batch: int | None = None,
        activation_checkpointing: bool = False,
        image_size: int = 256,
    ) -> float:
        """Achieved training FLOP/s at this depth, interpolated over the measured depths (see
        the module docstring). With micro_batch None, each depth's fastest measured micro-batch
        is used. ConfigError when the file holds no measurement of this device or setting."""
        on_device = [record for record in self.records if record.device_name == device_name]
        if not on_device:
            raise ConfigError(
                f"throughput file {self.source} was measured on {self.device_names()}, "
                f"not on {device_name!r}: measure this device with `varscale bench --save`"
            )
        wanted = {
            "image_size": image_size,
            "precision": precision,
            "compile": compile,
            "attention": attention,
            "activation_checkpointing": activation_checkpointing,
        }
        if micro_batch is not None:
            wanted["micro_batch"] = micro_batch
        matching = [
            record for record in on_device if all(getattr(record, name) == value for name, value in wanted.items())
        ]
        if not matching:
            measured = sorted({tuple((name, getattr(record, name)) for name in wanted) for record in on_device})
            raise ConfigError(
                f"throughput file {self.source} has no measurement on {device_name!r} with "
                f"{wanted}; measured there: {[dict(item) for item in measured]}"
            )
        by_depth: dict[int, float] = {}
        for record in matching:
            by_depth[record.depth] = max(by_depth.get(record.depth, 0.0), record.flops_per_second)
        return interpolate_over_depth(by_depth, depth)


def interpolate_over_depth(values_by_depth: dict[int, float], depth: int) -> float:
    """Linear in depth between the two nearest measured depths; the nearest one's value outside."""
    depths = sorted(values_by_depth)
    if depth <= depths[0]:
        return values_by_depth[depths[0]]
    if depth >= depths[-1]:
        return values_by_depth[depths[-1]]
    upper = next(d for d in depths if d >= depth)
    lower = max(d for d in depths if d <= depth)
    if upper == lower:
        return values_by_depth[lower]
    weight = (depth - lower) / (upper - lower)
    return (1 - weight) * values_by_depth[lower] + weight * values_by_depth[upper]


def save_record(path: str | os.PathLike, record: ThroughputRecord) -> None:
    """Add `record` to the file (replacing one with the same key), creating the file if needed.

    Written atomically (var_model/files.py), so a concurrent reader (a dry-run) never sees half
    a file."""
    path = Path(path)
    records = ThroughputTable.load(path).records if path.exists() else []
    records = [old for old in records if old.key != record.key] + [record]
    records.sort(key=lambda r: r.key)  # a stable order: reruns give small diffs
    data = {"format": FILE_FORMAT, "version": FILE_VERSION, "records": [dataclasses.asdict(r) for r in records]}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
