"""How a trial's VAR is laid over its processes: DDP replicas or FSDP2 shards.

One process: the bare module. Several processes: `DistributedDataParallel` (sharding "ddp"),
or FSDP2 `fully_shard` per transformer block, then the root (sharding "fsdp"): each rank keeps
1/world of every weight, gradient and optimizer state, and all-gathers a block's weights just
before its forward and backward.

Everything the trainer must do differently per layout lives here, behind one function each:
skipping gradient sync on all but the last micro-batch, gradient clipping (the norm of
sharded gradients is a sum over ranks), full state dicts for checkpoints (one file format for
every layout, written by rank 0), and gathering the weights for forwards that not every rank
runs in step (evaluation's uneven row shares, sampling on rank 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from var_model.training.distributed import DistributedContext
from var_model.var import VAR

# Unsharded tensors on CPU: the checkpoint holds the same plain state dicts whatever the
# layout, so any layout resumes any other's checkpoint. Only rank 0 receives them.
FULL_STATE = StateDictOptions(full_state_dict=True, cpu_offload=True)


def distribute(var: VAR, sharding: str, context: DistributedContext) -> torch.nn.Module:
    """The module the training step calls: `var` itself (one process, or FSDP, which shards
    `var` in place), or a DDP wrapper around it."""
    if not context.is_distributed:
        return var
    if sharding == "fsdp":
        mesh = init_device_mesh(context.device.type, (context.world_size,))
        # per block: only one block's full weights exist at a time; the root takes the rest
        # (embeddings, head), which stay gathered from its forward until after its backward
        for block in var.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(var, mesh=mesh)
        return var
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(var, device_ids=device_ids)


def is_sharded(module: torch.nn.Module) -> bool:
    return isinstance(module, FSDPModule)


def gradient_sync(model: torch.nn.Module, enabled: bool) -> AbstractContextManager[None]:
    """A region whose backward reduces gradients over ranks (enabled) or only accumulates
    them locally (for every micro-batch but the last)."""
    if enabled:
        return nullcontext()
    if isinstance(model, DistributedDataParallel):
        return model.no_sync()
    if isinstance(model, FSDPModule):
        return _fsdp_no_sync(model)
    return nullcontext()


@contextmanager
def _fsdp_no_sync(model: FSDPModule) -> Iterator[None]:
    # FSDP2 has no no_sync(); this flag is its equivalent (gradients stay unsharded until the
    # synchronising backward reduce-scatters their sum)
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def clip_gradients(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale gradients to a total L2 norm of at most max_norm; returns the norm before.

    torch's norm over FSDP's sharded gradients is a DTensor pending a sum over ranks, which
    `full_tensor()` completes, so every rank clips by the same global norm (as DDP does)."""
    parameters = list(parameters)
    gradients = [parameter.grad for parameter in parameters if parameter.grad is not None]
    total_norm = torch.nn.utils.get_total_norm(gradients)
    if isinstance(total_norm, DTensor):
        total_norm = total_norm.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, total_norm)
    return total_norm


def full_state_dicts(var: VAR, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model, optimizer) state dicts, unsharded, on CPU, with parameter names as keys.
    Collective under FSDP: every rank calls it; rank 0 receives the states, the others empty
    dicts."""
    model_state = get_model_state_dict(var, options=FULL_STATE)
    optimizer_state = get_optimizer_state_dict(var, optimizer, options=FULL_STATE)
    return model_state, optimizer_state


def load_full_state_dicts(
    var: VAR, optimizer: torch.optim.Optimizer, model_state: dict[str, Any], optimizer_state: dict[str, Any]
) -> None:
    """Load `full_state_dicts`' output (every rank holds the whole of it) into any layout."""
    # broadcast_from_rank0 stays off: every rank has read the file, so each one takes its shard
    options = StateDictOptions(full_state_dict=True, strict=True)
    set_model_state_dict(var, model_state, options=options)
    set_optimizer_state_dict(var, optimizer, optimizer_state, options=options)


def is_positional(optimizer_state: dict[str, Any]) -> bool:
    """Whether an optimizer state numbers its parameters (torch's `optimizer.state_dict()`)
    rather than naming them (`full_state_dicts`)."""
    return any(isinstance(key, int) for group in optimizer_state["param_groups"] for key in group["params"])


def named_optimizer_state(var: VAR, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """torch's own `optimizer.state_dict()` (parameters numbered in param-group order, as
    checkpoints before FSDP support stored it) with parameter names instead of numbers."""
    names_by_id = {id(parameter): name for name, parameter in var.named_parameters()}
    names = [names_by_id[id(parameter)] for group in optimizer.param_groups for parameter in group["params"]]
    return {
        "state": {names[number]: values for number, values in state["state"].items()},
        "param_groups": [
            {**group, "params": [names[number] for number in group["params"]]} for group in state["param_groups"]
        ],
    }


@contextmanager
def gathered_weights(var: VAR) -> Iterator[None]:
    """FSDP: every block's full weights on every rank for the duration, so that forwards
    inside need no collectives and ranks may run different numbers of them. Collective on
    entry: all ranks enter together. It costs the memory of one full copy of the weights
    (what DDP holds all the time). Other layouts: nothing to do."""
    if not is_sharded(var):
        yield
        return
    sharded_modules = [module for module in var.modules() if isinstance(module, FSDPModule)]
    for module in sharded_modules:
        if module is not var:
            # the root never reshards after its forward; the blocks must not either in here
            module.set_reshard_after_forward(False, recurse=False)
        module.unshard()
    try:
        yield
    finally:
        for module in sharded_modules:
            module.reshard()
            if module is not var:
                module.set_reshard_after_forward(True, recurse=False)
