"""Measured peak tensor memory of a VAR training step: the check on `var_model.memory`.

CPU: torch 2.13 has no CPU counterpart of `torch.cuda.max_memory_allocated`, but the CPU
allocator reports every allocation and free to the profiler when `profile_memory=True`
(the `[memory]` events, one per malloc/free, with signed byte counts). Summing them in time
order gives the live tensor bytes allocated since recording began; its maximum inside a
`record_function` region is that region's peak. Only allocations made while recording are
tracked (a free of an older tensor is not reported), so everything the step touches -- model,
optimizer, batch -- is built inside the recording. The profiler reports only from threads it
is enabled on: exact for a single-process step (tests/model/test_memory.py checks a known
allocation to the byte), not for collectives that free buffers on gloo's own threads. CUDA:
the caching allocator's own `max_memory_allocated`. Shape legend: B batch, L tokens.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import torch
import torch.distributed
from torch import multiprocessing
from torch.autograd.profiler import MEMORY_EVENT_NAME
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import ProfilerActivity, profile, record_function

from var_model.config import VARConfig
from var_model.errors import ConfigError
from var_model.training.evaluation import token_losses
from var_model.training.optimizer import build_optimizer
from var_model.var import VAR

MEASURED_REGION = "varscale_measured_step"


class CpuMemoryRecording:
    """Live CPU tensor bytes over time, from the allocator's reports to the profiler.

    with CpuMemoryRecording() as recording:
        state = build()                       # tracked: allocated while recording
        step(state)                           # warm-up
        with recording.region():
            step(state)
    recording.region_peak_bytes()             # max live bytes during the region
    """

    def __init__(self) -> None:
        self._profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._events: list | None = None

    def __enter__(self) -> Self:
        self._profiler.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self._profiler.__exit__(*exc_info)
        self._events = list(self._profiler.profiler.kineto_results.events())

    @contextlib.contextmanager
    def region(self, name: str = MEASURED_REGION) -> Iterator[None]:
        with record_function(name):
            yield

    def region_peak_bytes(self, name: str = MEASURED_REGION) -> int:
        """Maximum of the live bytes (allocated since recording began) inside the last region
        called `name`, counting what was live when it began."""
        if self._events is None:
            raise RuntimeError("region_peak_bytes is read after the recording has ended")
        regions = [event for event in self._events if event.name() == name]
        if not regions:
            raise RuntimeError(f"no region {name!r} was recorded")
        begin, end = regions[-1].start_ns(), regions[-1].end_ns()
        live, peak = 0, None
        for event in self._cpu_memory_events():
            if event.start_ns() > end:
                break
            if event.start_ns() >= begin and peak is None:
                peak = live  # what was live when the region began
            live += event.nbytes()
            if peak is not None:
                peak = max(peak, live)
        return live if peak is None else peak

    def _cpu_memory_events(self) -> list:
        events = [
            event
            for event in self._events
            if event.name() == MEMORY_EVENT_NAME and event.device_type() == torch.autograd.DeviceType.CPU
        ]
        # sorted() is stable: events with one timestamp keep the order they were reported in
        return sorted(events, key=lambda event: event.start_ns())


def build_var_for_step(
    var_config: VARConfig, activation_checkpointing: str, device: torch.device, attention: str = "sdpa"
) -> VAR:
    """The VAR a training step runs: per-block activation checkpointing ("none" or "blocks")
    and the training forward's attention kernel as the trainer sets them."""
    if activation_checkpointing not in ("none", "blocks"):
        raise ConfigError(f"activation_checkpointing={activation_checkpointing!r} is not allowed: 'none' or 'blocks'")
    var = VAR(var_config).to(device)
    var.use_activation_checkpointing(activation_checkpointing == "blocks")
    var.use_attention_kernel(attention)
    return var


def synthetic_batch(
    var_config: VARConfig, micro_batch_size: int, device: torch.device, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(labels (B,), teacher-forcing input (B, L - pn0^2, Cvae) float32, targets (B, L)):
    the shapes and dtypes of a real batch, without a tokenizer."""
    generator = torch.Generator().manual_seed(seed)
    B, L = micro_batch_size, var_config.sequence_length
    label_B = torch.randint(var_config.num_classes, (B,), generator=generator)
    x_BLC = torch.randn(B, L - var_config.first_length, var_config.latent_channels, generator=generator)
    indices_BL = torch.randint(var_config.codebook_size, (B, L), generator=generator)
    return label_B.to(device), x_BLC.to(device), indices_BL.to(device)


def training_step(
    var: VAR,
    optimizer: torch.optim.Optimizer,
    micro_batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    grad_clip: float = 2.0,
    autocast_dtype: torch.dtype | None = None,
    model: torch.nn.Module | None = None,
) -> None:
    """One update in the trainer's order (var_model.training.step): zero_grad, then per
    micro-batch (labels, teacher input, targets) a forward, its share of the mean token loss
    and a backward (gradients accumulate from the second on; a DDP `model` syncs on the last
    only), then clipping and AdamW."""
    model = model if model is not None else var
    tokens = sum(indices_BL.numel() for _, _, indices_BL in micro_batches)
    optimizer.zero_grad(set_to_none=True)
    for number, (label_B, x_BLC, indices_BL) in enumerate(micro_batches):
        last = number == len(micro_batches) - 1
        sync = model.no_sync() if isinstance(model, DistributedDataParallel) and not last else contextlib.nullcontext()
        with sync:
            _forward_backward(model, label_B, x_BLC, indices_BL, tokens, autocast_dtype)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(var.parameters(), grad_clip)
    optimizer.step()


def _forward_backward(
    var: torch.nn.Module,
    label_B: torch.Tensor,
    x_BLC: torch.Tensor,
    indices_BL: torch.Tensor,
    tokens: int,
    autocast_dtype: torch.dtype | None,
) -> None:
    autocast = (
        torch.autocast(device_type=x_BLC.device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    with autocast:
        logits_BLV = var(label_B, x_BLC)
    loss_BL, _error_BL = token_losses(logits_BLV, indices_BL)
    (loss_BL.sum() / tokens).backward()


def _micro_batches(
    var_config: VARConfig, micro_batch_size: int, accumulation_steps: int, device: torch.device, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return [
        synthetic_batch(var_config, micro_batch_size, device, seed + number) for number in range(accumulation_steps)
    ]


def measure_cpu_training_peak(
    var_config: VARConfig,
    micro_batch_size: int,
    activation_checkpointing: str = "none",
    attention: str = "sdpa",
    accumulation_steps: int = 2,
    seed: int = 0,
) -> int:
    """Peak live CPU tensor bytes of a float32 training step in steady state (the second
    step: AdamW moments exist), everything since the model was built counted. With two or
    more accumulation steps the later micro-batches run with the gradients live."""
    device = torch.device("cpu")
    torch.manual_seed(seed)
    with CpuMemoryRecording() as recording:
        var = build_var_for_step(var_config, activation_checkpointing, device, attention)
        optimizer = build_optimizer(var, lr=1e-4)
        micro_batches = _micro_batches(var_config, micro_batch_size, accumulation_steps, device, seed)
        training_step(var, optimizer, micro_batches)
        with recording.region():
            training_step(var, optimizer, micro_batches)
    return recording.region_peak_bytes()


def measure_cpu_ddp_training_peak(
    var_config: VARConfig, micro_batch_size: int, world_size: int = 2, accumulation_steps: int = 2, seed: int = 0
) -> int:
    """`measure_cpu_training_peak` of rank 0 under DistributedDataParallel over `world_size`
    gloo processes (spawned here). Only DDP: FSDP2 frees buffers on gloo's threads, whose
    frees the profiler does not see, so its CPU peaks come out high by a varying amount."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "peak_bytes"
        multiprocessing.spawn(
            _ddp_rank,
            nprocs=world_size,
            join=True,
            args=(world_size, port, var_config, micro_batch_size, accumulation_steps, seed, str(result)),
        )
        return int(result.read_text())


def _ddp_rank(
    rank: int,
    world_size: int,
    port: int,
    var_config: VARConfig,
    micro_batch_size: int,
    accumulation_steps: int,
    seed: int,
    result: str,
) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        device = torch.device("cpu")
        torch.manual_seed(seed)
        with CpuMemoryRecording() as recording:
            var = build_var_for_step(var_config, "none", device)
            model = DistributedDataParallel(var)
            optimizer = build_optimizer(var, lr=1e-4)
            micro_batches = _micro_batches(var_config, micro_batch_size, accumulation_steps, device, seed + 1000 * rank)
            training_step(var, optimizer, micro_batches, model=model)
            with recording.region():
                training_step(var, optimizer, micro_batches, model=model)
        if rank == 0:
            Path(result).write_text(str(recording.region_peak_bytes()))
    finally:
        torch.distributed.destroy_process_group()


def measure_cuda_training_peak(
    var_config: VARConfig,
    micro_batch_size: int,
    autocast_dtype: torch.dtype | None,
    activation_checkpointing: str = "none",
    attention: str = "sdpa",
    accumulation_steps: int = 2,
    device: torch.device | None = None,
    seed: int = 0,
) -> int:
    """`torch.cuda.max_memory_allocated` over a steady-state training step (fused AdamW, as
    the trainer builds it on CUDA), less what was allocated before the model was built."""
    device = device or torch.device("cuda")
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)  # whatever earlier work left on the device
    torch.manual_seed(seed)
    var = build_var_for_step(var_config, activation_checkpointing, device, attention)
    optimizer = build_optimizer(var, lr=1e-4, fused=True)
    micro_batches = _micro_batches(var_config, micro_batch_size, accumulation_steps, device, seed)
    training_step(var, optimizer, micro_batches, autocast_dtype=autocast_dtype)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    training_step(var, optimizer, micro_batches, autocast_dtype=autocast_dtype)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - baseline
    del var, optimizer, micro_batches
    torch.cuda.empty_cache()
    return peak
