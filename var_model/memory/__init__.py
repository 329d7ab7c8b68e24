"""Memory per device of a VAR training step, from the config alone, and the execution choice
(micro-batch, activation checkpointing, sharding) that fits a GPU's memory.

`training_memory` counts the bytes (formula in `var_model.memory.plan`); `choose_execution`
picks the fastest layout that fits (rules in `var_model.memory.execution`). The measured peaks
they are checked against come from `var_model.memory_measurement`.
"""

from var_model.memory.execution import ExecutionPlan, choose_execution
from var_model.memory.plan import (
    ACTIVATION_CHECKPOINTING,
    ATTENTION_KERNELS,
    BYTES_PER_GB,
    PART_NAMES,
    PRECISIONS,
    MemoryPlan,
    format_bytes,
    training_memory,
)

__all__ = [
    "ACTIVATION_CHECKPOINTING",
    "ATTENTION_KERNELS",
    "BYTES_PER_GB",
    "PART_NAMES",
    "PRECISIONS",
    "ExecutionPlan",
    "MemoryPlan",
    "choose_execution",
    "format_bytes",
    "training_memory",
]
