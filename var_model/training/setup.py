"""Building everything a trial trains with, from its config: the named steps of `run_trial`.

Kept apart from the loop so that the loop reads as what it is (step, log, evaluate,
checkpoint) and so that a benchmark can build the same trial and time its steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

from var_model import counting
from var_model.attention import default_attention_kernel, flex_trains_on
from var_model.errors import ConfigError
from var_model.tokenizer.cache import TokenCache
from var_model.training.batches import TokenBatches
from var_model.training.budget import StepCost, steps_for_budget
from var_model.training.config import TrialConfig
from var_model.training.distributed import DistributedContext
from var_model.training.forks import ForkPlan
from var_model.training.optimizer import build_optimizer
from var_model.training.parallel import distribute, is_sharded
from var_model.training.schedules import LRSchedule
from var_model.var import VAR
from var_model.vqvae import VQVAE

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class MicroBatches:
    """How one rank's share of the global batch splits into equal micro-batches."""

    per_rank: int
    size: int

    @classmethod
    def plan(cls, batch_size: int, micro_batch_size: int | None, world_size: int) -> MicroBatches:
        """micro_batch_size None: the whole share at once. A remainder is a ConfigError."""
        if batch_size % world_size:
            raise ConfigError(f"batch_size {batch_size} does not divide by the {world_size} processes")
        per_rank = batch_size // world_size
        size = per_rank if micro_batch_size is None else micro_batch_size
        if per_rank % size:
            raise ConfigError(
                f"micro_batch_size {size} does not divide the per-process share of batch_size "
                f"{batch_size} over world size {world_size} ({per_rank} images); use a divisor of {per_rank}"
            )
        return cls(per_rank=per_rank, size=size)

    @property
    def steps(self) -> int:
        """Forward/backward passes per update (the accumulation steps)."""
        return self.per_rank // self.size


@dataclass(frozen=True)
class ExecutionChoices:
    """The trial's execution switches with "auto" resolved for its device."""

    attention: str
    compile: bool
    activation_checkpointing: bool
    sharding: str

    @classmethod
    def resolve(cls, config: TrialConfig, context: DistributedContext) -> ExecutionChoices:
        device_type = context.device.type
        compile_model = device_type == "cuda" if config.compile == "auto" else config.compile
        default = default_attention_kernel(device_type, compiled=compile_model)
        attention = default if config.attention == "auto" else config.attention
        if attention == "flex" and not flex_trains_on(device_type):
            raise ConfigError(
                f"attention is 'flex', but torch {torch.__version__} has no FlexAttention backward on "
                f"{device_type}; use attention: auto or {default}"
            )
        # one process: nothing to shard or replicate, both layouts are plain training
        sharding = config.sharding if context.is_distributed else "single"
        return cls(attention, compile_model, config.activation_checkpointing == "blocks", sharding)

    def apply(self, var: VAR) -> None:
        var.use_attention_kernel(self.attention)
        var.use_activation_checkpointing(self.activation_checkpointing)
        if self.compile:
            # per block, in place: identical blocks share one compiled graph, FSDP's and DDP's
            # per-block hooks stay outside the graphs (so communication overlaps compute), and
            # parameter names (checkpoints) stay those of the plain module
            for block in var.blocks:
                block.compile()


@dataclass
class TrialParts:
    """A trial ready to train. `model` is what the step calls (DDP-wrapped under torchrun;
    under FSDP, `var` itself, sharded in place); `var` is the module for evaluation,
    checkpoints and sampling. `steps` is where training ends (`plan.end_step`: a trunk stops
    at its last fork, before its schedule's `total_steps`)."""

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
    micro_batches: MicroBatches
    execution: ExecutionChoices
    plan: ForkPlan
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
    # configuration errors first, before any file is read
    micro_batches = MicroBatches.plan(config.batch_size, config.micro_batch_size, context.world_size)
    execution = ExecutionChoices.resolve(config, context)
    # only rank 0 pays for the checksum pass; the others trust the same files
    cache = TokenCache.open(config.token_cache, verify=verify_cache and context.is_main)
    vqvae = cache.load_tokenizer(device)
    var_config = config.var_config(cache.tokenizer_config, cache.num_classes)

    torch.manual_seed(config.seed)
    # every rank draws the same initial weights: FSDP shards each rank's own copy
    var = VAR(var_config, vqvae=vqvae).to(device)
    if context.rank:
        # distinct class-dropout/drop-path draws per rank
        torch.manual_seed(config.seed + 1_000_003 * context.rank)
    execution.apply(var)
    model = distribute(var, config.sharding, context)

    flops_per_image = var.flops_per_image(training=True)
    cost = StepCost.for_batch(config.batch_size, var_config.sequence_length, flops_per_image)
    budget_steps = steps_for_budget(config.budget_kind, config.budget_value, cost)
    warmup_steps = round(config.warmup_fraction * budget_steps) if config.warmup_steps is None else config.warmup_steps
    schedule = LRSchedule(
        kind=config.schedule,
        peak_lr=config.peak_lr,
        total_steps=budget_steps,
        warmup_steps=warmup_steps,
        warmup_start_factor=config.warmup_start_factor,
        final_lr_fraction=config.final_lr_fraction,
        flat_fraction=config.flat_fraction,
        decay_fraction=config.decay_fraction,
        decay_shape=config.decay_shape,
    )
    plan = ForkPlan.for_trial(config, cost, budget_steps, warmup_steps)
    steps = plan.end_step
    optimizer = build_optimizer(
        var,
        lr=schedule.lr(0),
        weight_decay=config.weight_decay,
        betas=(config.beta1, config.beta2),
        # fused on CPU too: one kernel over all parameters, 48 -> 18 ms per step at d6 (measured
        # with `varscale bench --fused-adamw`), and bit-identical from run to run, so resume stays exact
        fused=device.type in ("cuda", "cpu"),
    )
    autocast_dtype = autocast_dtype_for(config, device)
    scaler = None
    if autocast_dtype == torch.float16:
        # sharded gradients: each rank sees only its shard's infs, so the skip decision is
        # all-reduced (with replicated gradients every rank sees the same infs)
        scaler = ShardedGradScaler("cuda") if is_sharded(var) else torch.amp.GradScaler("cuda")
    batches = TokenBatches(cache, config.batch_size, config.seed)

    params = var.param_counts()
    info = {
        "depth": var_config.depth,
        "width": var_config.width,
        "heads": var_config.num_heads,
        "params_total": params["total"],
        "params_per_token": params["per_token"],
        "flops_per_image": flops_per_image,
        "flops_per_image_6n": counting.six_n_l(var_config),
        "tokens_per_image": var_config.sequence_length,
        "steps": steps,
        "lr": config.peak_lr,
        "base_lr": config.base_lr,
        "batch_size": config.batch_size,
        "budget_kind": config.budget_kind,
        "budget_value": config.budget_value,
        "schedule": config.schedule,
        "warmup_steps": schedule.warmup_steps,
        "seed": config.seed,
        "cache_key": cache.key,
        "device": str(device),
        "world_size": context.world_size,
        "precision": config.precision if autocast_dtype is not None else "fp32",
        "train_images": cache.images("train"),
        "test_images": cache.images("test"),
        "micro_batch_size": micro_batches.size,
        "accumulation_steps": micro_batches.steps,
        "sharding": execution.sharding,
        "activation_checkpointing": config.activation_checkpointing,
        "compile": execution.compile,
        "attention": execution.attention,
        "decay_shape": config.decay_shape,
        "role": plan.role,
        "budget_steps": budget_steps,
        "steps_trained": plan.steps_trained,
    }
    if plan.role == "branch":
        info.update(fork_step=plan.start_step, fork_path=config.fork_path)
    return TrialParts(
        cache,
        vqvae,
        var,
        model,
        optimizer,
        scaler,
        schedule,
        batches,
        cost,
        steps,
        autocast_dtype,
        micro_batches,
        execution,
        plan,
        info,
    )
