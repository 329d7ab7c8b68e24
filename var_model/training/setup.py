"""Building everything a trial trains with, from its config: the named steps of `run_trial`.

Kept apart from the loop so that the loop reads as what it is (step, log, evaluate,
checkpoint) and so that a benchmark can build the same trial and time its steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from var_model import counting
from var_model.errors import ConfigError
from var_model.tokenizer.cache import TokenCache
from var_model.training.batches import TokenBatches
from var_model.training.budget import StepCost, steps_for_budget
from var_model.training.config import TrialConfig
from var_model.training.distributed import DistributedContext
from var_model.training.optimizer import build_optimizer
from var_model.training.schedules import LRSchedule
from var_model.var import VAR
from var_model.vqvae import VQVAE

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrialParts:
    """A trial ready to train. `model` is what the step calls (DDP-wrapped under torchrun);
    `var` is the bare module (for evaluation, checkpoints, sampling)."""

    cache: TokenCache
    vqvae: VQVAE
    var: VAR
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    schedule: LRSchedule
    batches: TokenBatches
    cost: StepCost
    steps: int
    autocast_dtype: torch.dtype | None
    info: dict[str, Any]


def autocast_dtype_for(config: TrialConfig, device: torch.device) -> torch.dtype | None:
    """bf16 (or fp16) autocast on CUDA; CPU trials run in float32 (CPU autocast is slow for
    these sizes and would make the CPU reference numbers depend on the kernel library)."""
    if device.type != "cuda" or config.precision == "fp32":
        return None
    if config.precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("precision bf16 needs a GPU with bf16 support; use precision: fp16")
    return AUTOCAST_DTYPES[config.precision]


def build_trial(config: TrialConfig, context: DistributedContext, verify_cache: bool = True) -> TrialParts:
    device = context.device
    # only rank 0 pays for the checksum pass; the others trust the same files
    cache = TokenCache.open(config.token_cache, verify=verify_cache and context.is_main)
    vqvae = cache.load_tokenizer(device)
    var_config = config.var_config(cache.tokenizer_config, cache.num_classes)

    torch.manual_seed(config.seed)
    var = VAR(var_config, vqvae=vqvae).to(device)
    if context.rank:
        # distinct class-dropout/drop-path draws per rank (DDP copies rank 0's weights anyway)
        torch.manual_seed(config.seed + 1_000_003 * context.rank)
    model: torch.nn.Module = var
    if context.is_distributed:
        model = DistributedDataParallel(var, device_ids=[device.index] if device.type == "cuda" else None)

    flops_per_image = var.flops_per_image(training=True)
    cost = StepCost.for_batch(config.batch_size, var_config.sequence_length, flops_per_image)
    steps = steps_for_budget(config.budget_kind, config.budget_value, cost)
    schedule = LRSchedule(
        kind=config.schedule, peak_lr=config.peak_lr, total_steps=steps,
        warmup_steps=round(config.warmup_fraction * steps),
        warmup_start_factor=config.warmup_start_factor, final_lr_fraction=config.final_lr_fraction,
        flat_fraction=config.flat_fraction, decay_fraction=config.decay_fraction,
    )
    optimizer = build_optimizer(
        var, lr=schedule.lr(0), weight_decay=config.weight_decay,
        betas=(config.beta1, config.beta2), fused=device.type == "cuda",
    )
    autocast_dtype = autocast_dtype_for(config, device)
    scaler = torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 else None
    batches = TokenBatches(cache, config.batch_size, config.seed)
    context.shard(config.batch_size)  # fail early if the batch does not split over ranks

    params = var.param_counts()
    info = {
        "depth": var_config.depth, "width": var_config.width, "heads": var_config.num_heads,
        "params_total": params["total"], "params_per_token": params["per_token"],
        "flops_per_image": flops_per_image, "flops_per_image_6n": counting.six_n_l(var_config),
        "tokens_per_image": var_config.sequence_length, "steps": steps, "lr": config.peak_lr,
        "base_lr": config.base_lr, "batch_size": config.batch_size,
        "budget_kind": config.budget_kind, "budget_value": config.budget_value,
        "schedule": config.schedule, "warmup_steps": schedule.warmup_steps, "seed": config.seed,
        "cache_key": cache.key, "device": str(device), "world_size": context.world_size,
        "precision": config.precision if autocast_dtype is not None else "fp32",
        "train_images": cache.images("train"), "test_images": cache.images("test"),
    }
    return TrialParts(cache, vqvae, var, model, optimizer, scaler, schedule, batches, cost, steps,
                      autocast_dtype, info)
