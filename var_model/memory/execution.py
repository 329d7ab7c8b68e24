"""The execution of a trial that fits its GPUs: micro-batch, activation checkpointing, sharding.

Rules of `choose_execution`, cheapest in compute first:
1. Layouts are tried in this order: no checkpointing under DDP, then per-block checkpointing
   (about one more block forward of compute), then FSDP over the world size (collectives every
   block) without and with checkpointing. A fixed choice keeps only the layouts that have it;
   FSDP over one process is no layout of its own (it shards nothing) unless asked for.
2. The first layout where micro-batch 1 fits wins, with the largest micro-batch that divides
   the per-rank share (global batch / world size) and fits within (1 - margin) x the memory.
   A fixed micro-batch is checked, not changed.
3. Nothing fits: a ConfigError with the numbers (needed vs available GB, the micro-batch,
   every layout tried). The caller adds the trial's name.
"""

from __future__ import annotations

from dataclasses import dataclass

from var_model.config import VARConfig
from var_model.errors import ConfigError
from var_model.memory.plan import (
    ACTIVATION_CHECKPOINTING,
    BYTES_PER_GB,
    MemoryPlan,
    format_bytes,
    training_memory,
)

SHARDINGS = ("ddp", "fsdp")
AUTO = "auto"


@dataclass(frozen=True)
class ExecutionPlan:
    """How a trial runs on each of its GPUs, and the memory plan it was checked with."""

    micro_batch_size: int
    accumulation_steps: int
    activation_checkpointing: str
    sharding: str
    world_size: int
    memory: MemoryPlan
    gpu_memory_bytes: int
    margin: float

    @property
    def usable_bytes(self) -> int:
        """The budget the plan must stay under: (1 - margin) x the GPU's memory."""
        return int((1.0 - self.margin) * self.gpu_memory_bytes)

    def format(self) -> str:
        return (
            f"micro-batch {self.micro_batch_size} x {self.accumulation_steps} accumulation step(s), "
            f"checkpointing {self.activation_checkpointing}, {self.sharding} over {self.world_size} GPU(s): "
            f"peak {format_bytes(self.memory.total_bytes)} of {format_bytes(self.usable_bytes)} usable "
            f"({format_bytes(self.gpu_memory_bytes)} less a {self.margin:.0%} margin; 1 GB = 1e9 bytes)"
        )

    def __str__(self) -> str:
        return self.format()


def _positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}={value!r} is not allowed: a positive integer")
    return value


def _check_arguments(
    global_batch: int,
    world_size: int,
    gpu_memory_bytes: float,
    margin: float,
    micro_batch_size: int | str,
    activation_checkpointing: str,
    sharding: str,
) -> int:
    """Validate; return the per-rank share of the global batch."""
    _positive_int("batch_size", global_batch)
    _positive_int("world_size", world_size)
    if not isinstance(gpu_memory_bytes, (int, float)) or not gpu_memory_bytes > 0:
        gigabytes = gpu_memory_bytes / BYTES_PER_GB if isinstance(gpu_memory_bytes, (int, float)) else gpu_memory_bytes
        raise ConfigError(
            f"gpu_memory_gb={gigabytes!r} is not allowed: the memory of one GPU in GB, > 0 (e.g. 80 for an H100)"
        )
    if not isinstance(margin, (int, float)) or not 0.0 <= margin < 1.0:
        raise ConfigError(f"margin={margin!r} is not allowed: a fraction in [0, 1) of the GPU's memory kept free")
    if activation_checkpointing not in (AUTO, *ACTIVATION_CHECKPOINTING):
        raise ConfigError(
            f"activation_checkpointing={activation_checkpointing!r} is not allowed: "
            f"auto, {', '.join(ACTIVATION_CHECKPOINTING)}"
        )
    if sharding not in (AUTO, *SHARDINGS):
        raise ConfigError(f"sharding={sharding!r} is not allowed: auto, {', '.join(SHARDINGS)}")
    if global_batch % world_size:
        raise ConfigError(
            f"batch_size={global_batch} does not divide over {world_size} GPUs; use a multiple of {world_size}"
        )
    per_rank = global_batch // world_size
    if micro_batch_size != AUTO:
        _positive_int("micro_batch_size", micro_batch_size)
        if per_rank % micro_batch_size:
            divisors = [size for size in range(1, per_rank + 1) if per_rank % size == 0]
            raise ConfigError(
                f"micro_batch_size={micro_batch_size} does not divide the per-GPU share of "
                f"batch_size {global_batch} over {world_size} GPUs ({per_rank} images); "
                f"allowed: auto or one of {divisors}"
            )
    return per_rank


def _layouts(activation_checkpointing: str, sharding: str, world_size: int) -> list[tuple[str, str]]:
    """(checkpointing, sharding) pairs in the order they are tried (module docstring, rule 1)."""
    shardings = list(SHARDINGS) if sharding == AUTO else [sharding]
    if sharding == AUTO and world_size == 1:
        shardings = ["ddp"]
    checkpointings = list(ACTIVATION_CHECKPOINTING) if activation_checkpointing == AUTO else [activation_checkpointing]
    return [(checkpointing, layout) for layout in shardings for checkpointing in checkpointings]


def choose_execution(
    var_config: VARConfig,
    global_batch: int,
    world_size: int,
    gpu_memory_bytes: float,
    precision: str,
    micro_batch_size: int | str = AUTO,
    activation_checkpointing: str = AUTO,
    sharding: str = AUTO,
    margin: float = 0.10,
    attention: str = "sdpa",
) -> ExecutionPlan:
    """The execution that fits (rules: module docstring); ConfigError when none does."""
    per_rank = _check_arguments(
        global_batch, world_size, gpu_memory_bytes, margin, micro_batch_size, activation_checkpointing, sharding
    )
    usable = int((1.0 - margin) * gpu_memory_bytes)
    if micro_batch_size == AUTO:
        sizes = [size for size in range(per_rank, 0, -1) if per_rank % size == 0]
    else:
        sizes = [micro_batch_size]

    def plan_for(size: int, checkpointing: str, layout: str) -> MemoryPlan:
        return training_memory(
            var_config,
            size,
            precision,
            checkpointing,
            shards=world_size if layout == "fsdp" else 1,
            attention=attention,
            accumulation_steps=per_rank // size,
            ddp=layout == "ddp" and world_size > 1,
        )

    tried: list[tuple[str, int]] = []  # (layout, bytes at the smallest micro-batch)
    for checkpointing, layout in _layouts(activation_checkpointing, sharding, world_size):
        smallest = plan_for(sizes[-1], checkpointing, layout)
        if smallest.total_bytes > usable:
            tried.append((f"checkpointing {checkpointing} + {layout}", smallest.total_bytes))
            continue
        # memory grows with the micro-batch: the first size that fits, largest first, is the answer
        for size in sizes:
            memory = plan_for(size, checkpointing, layout)
            if memory.total_bytes <= usable:
                return ExecutionPlan(
                    micro_batch_size=size,
                    accumulation_steps=per_rank // size,
                    activation_checkpointing=checkpointing,
                    sharding=layout,
                    world_size=world_size,
                    memory=memory,
                    gpu_memory_bytes=int(gpu_memory_bytes),
                    margin=margin,
                )
    least = min(needed for _, needed in tried)
    layouts = "; ".join(f"{layout}: {format_bytes(needed)}" for layout, needed in tried)
    raise ConfigError(
        f"does not fit in GPU memory: at micro-batch {sizes[-1]} it needs at least {format_bytes(least)} per GPU, "
        f"{format_bytes(usable)} available ({format_bytes(int(gpu_memory_bytes))} less the {margin:.0%} margin); "
        f"tried {layouts}. Give the trial more GPUs (resources.gpus), larger ones (resources.gpu_memory_gb)"
        f"{', or a smaller micro_batch_size' if len(sizes) == 1 and sizes[0] > 1 else ''}"
    )
