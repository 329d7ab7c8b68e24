"""The `resources:` section of a study file: what each trial asks Ray for, and the hardware's
numbers that dry-run's memory plans and time estimates use."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from orchestration.study.depth_rule import DepthRule, depth_rule
from orchestration.study.fields import (
    NonNegativeInteger,
    NonNegativeNumber,
    PositiveInteger,
    PositiveNumber,
    Text,
    choice,
    expect_mapping,
)
from orchestration.study.section import Section, from_base_directory

DEVICES = ("auto", "cpu", "cuda")


def node_count(gpus: float, gpus_per_node: int | None) -> int | None:
    """The nodes a trial of `gpus` GPUs spans: one while they fit on one node, else
    gpus / gpus_per_node (the spec checks that it divides); None when a trial of more than one
    GPU has no gpus_per_node to split by (the cluster's, known at launch)."""
    if gpus <= 1:
        return 1
    if gpus_per_node is None:
        return None
    return max(1, math.ceil(gpus / gpus_per_node))


CustomResources = Annotated[dict[str, depth_rule(NonNegativeNumber)], expect_mapping("{resource name: amount}")]


class ResourceSpec(Section):
    cpus: depth_rule(PositiveNumber) = 1.0  # per trial (fractions pack trials)
    gpus: depth_rule(NonNegativeNumber) = 0.0  # per trial; > 1 runs data-parallel
    # GPUs of one node: a trial with more spans gpus / gpus_per_node nodes (one Ray placement
    # group bundle each); None: read from the cluster at launch (orchestration.execution)
    gpus_per_node: PositiveInteger | None = None
    custom: CustomResources = Field(default_factory=dict)  # Ray custom resources per trial
    device: choice(DEVICES) = "auto"  # auto: cuda when the trial holds a GPU, else cpu
    max_retries: NonNegativeInteger = 2  # retries after a worker or node died (never a divergence)
    # Achieved training FLOP/s for dry-run time estimates; measure with `varscale bench` on the
    # target hardware. Stated defaults: an H100 at ~40% of its 989 TFLOP/s bf16 peak; one CPU
    # thread as measured here (`varscale bench --depth 2 --batch 4 --threads 1`: 3.3e10).
    flops_per_second: PositiveNumber = 4.0e14  # per GPU
    cpu_flops_per_second: PositiveNumber = 3.0e10  # per CPU thread, for trials without a GPU
    # Measured FLOP/s (`varscale bench --save FILE`) for the GPU trials' estimates instead of
    # flops_per_second, looked up as device_name (None: the file's only device).
    throughput_file: Text | None = None
    device_name: Text | None = None
    gpu_memory_gb: PositiveNumber = 80.0  # of one GPU (1 GB = 1e9 bytes); every GPU trial's plan must fit it

    @field_validator("throughput_file")
    @classmethod
    def _throughput_path(cls, path: str | None, info: ValidationInfo) -> str | None:
        return None if path is None else from_base_directory(path, info)

    def rules(self) -> dict[str, DepthRule]:
        """Every per-depth rule of the section, by its path in the study file."""
        named = {
            f"resources.{name}": getattr(self, name)
            for name in type(self).model_fields
            if isinstance(getattr(self, name), DepthRule)
        }
        return {**named, **{f"resources.custom.{name}": rule for name, rule in self.custom.items()}}
