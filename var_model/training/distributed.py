"""The distributed context of one trial, passed down explicitly (no module globals).

Single process: `DistributedContext.single(device)`. Under torchrun (WORLD_SIZE > 1):
`DistributedContext.from_environment(device)` initialises the process group (NCCL on CUDA,
gloo on CPU) and pins each rank to its local GPU. Model code never sees this object; the
trainer uses it to shard batches, reduce metrics, and let only rank 0 write files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_distributed

from var_model.errors import ConfigError


def resolve_device(request: str) -> torch.device:
    """ "auto" -> cuda if available else cpu; "cuda" without a GPU is a clear error."""
    if request == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(request)
    except RuntimeError as error:
        raise ConfigError(f"device is {request!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device is {request!r} but no CUDA device is visible; use 'cpu' or 'auto'")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device type {device.type!r} is not supported; use 'cpu' or 'cuda'")
    return device


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialised_here: bool = False

    @classmethod
    def single(cls, device: torch.device) -> "DistributedContext":
        return cls(rank=0, world_size=1, local_rank=0, device=device)

    @classmethod
    def from_environment(cls, device_request: str = "auto") -> "DistributedContext":
        """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK; one process if they are absent."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls.single(resolve_device(device_request))
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = resolve_device(device_request)
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        initialised_here = False
        if not torch_distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            torch_distributed.init_process_group(backend=backend)
            initialised_here = True
        return cls(rank, world_size, local_rank, device, initialised_here)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, global_batch: int) -> slice:
        """This rank's rows of a global batch (which must divide evenly)."""
        if global_batch % self.world_size:
            raise ConfigError(f"batch_size {global_batch} does not divide by the {self.world_size} processes")
        per_rank = global_batch // self.world_size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.is_distributed:
            torch_distributed.all_reduce(tensor, op=torch_distributed.ReduceOp.SUM)
        return tensor

    def broadcast_flag(self, flag: bool) -> bool:
        """True on every rank if it is true on any (used to stop all ranks on divergence)."""
        if not self.is_distributed:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch_distributed.all_reduce(value, op=torch_distributed.ReduceOp.MAX)
        return bool(value.item())

    def gather_to_main(self, value: Any) -> list[Any] | None:
        """Every rank's `value` (picklable) on rank 0, in rank order; None on the others.
        Collective: every rank calls it."""
        if not self.is_distributed:
            return [value]
        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        torch_distributed.gather_object(value, gathered, dst=0)
        return gathered

    def barrier(self) -> None:
        if self.is_distributed:
            torch_distributed.barrier()

    def shutdown(self) -> None:
        if self.initialised_here and torch_distributed.is_initialized():
            torch_distributed.destroy_process_group()
