"""How each trial runs on its devices, decided at plan time: micro-batch, accumulation steps,
activation checkpointing and sharding, from `var_model.memory.choose_execution`.

A trial on CUDA gets a memory plan: world size = its GPUs (a fraction of one GPU is one process),
global batch = its recipe.batch_size, memory = resources.gpu_memory_gb per GPU (times the
fraction for a trial holding part of a GPU: Ray packs such trials onto one device), precision
from `trial.precision`, and the attention kernel the trainer will pick on CUDA. Its `auto`
choices are resolved here and the resolved values go into its TrialConfig, so the trial runs
exactly what dry-run printed; a trial that cannot fit is refused before anything is launched.
A CPU trial has no GPU memory to plan against: it runs the micro-batch as written (`auto`: its
whole batch) with TrialConfig's own defaults for checkpointing and sharding.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestration.study.spec import TRIAL_DEFAULTS, StudySpec
from var_model.attention import default_attention_kernel, flex_trains_on
from var_model.config import VARConfig
from var_model.errors import ConfigError
from var_model.memory import BYTES_PER_GB, PRECISIONS, ExecutionPlan, choose_execution
from var_model.memory.execution import AUTO


def world_size(gpus: float) -> int:
    """Processes a trial runs: one per whole GPU (torchrun), one for a fraction of a GPU or none."""
    return int(gpus) if gpus >= 1 else 1


def trial_device(spec: StudySpec, gpus: float) -> str:
    if spec.resources.device == AUTO:
        # A trial that holds no GPU must not grab one because the node happens to have it.
        return "cuda" if gpus > 0 else "cpu"
    return spec.resources.device


@dataclass(frozen=True)
class TrialExecution:
    """A trial's execution with every `auto` of the recipe resolved for its device."""

    device: str  # "cuda" or "cpu"
    micro_batch_size: int | None  # None: the rank's whole share of the batch (TrialConfig's meaning)
    accumulation_steps: int
    activation_checkpointing: str
    sharding: str
    attention: str  # the kernel the trial runs on its device (recipe.attention resolved)
    compile: bool  # recipe.compile resolved for the device
    plan: ExecutionPlan | None  # the memory plan; None for a CPU trial

    def trial_values(self) -> dict:
        """The TrialConfig fields this decides (compile and attention stay as the recipe wrote
        them: the trainer resolves `auto` for the device it finds, which is the one planned for)."""
        return {
            "micro_batch_size": self.micro_batch_size,
            "activation_checkpointing": self.activation_checkpointing,
            "sharding": self.sharding,
        }


def trial_precision(spec: StudySpec) -> str:
    precision = spec.trial.get("precision", TRIAL_DEFAULTS["precision"])
    if precision not in PRECISIONS:
        raise ConfigError(f"trial.precision: {precision!r} is not allowed; choose one of {', '.join(PRECISIONS)}")
    return precision


def _attention_on(spec: StudySpec, device: str, trials: str) -> str:
    attention = spec.recipe.attention
    if attention == AUTO:
        return default_attention_kernel(device)
    if attention == "flex" and not flex_trains_on(device):
        raise ConfigError(
            f"recipe.attention: 'flex' has no backward on {device} in this torch, and {trials} run on {device}; "
            f"use auto or {default_attention_kernel(device)}"
        )
    return attention


def _written_or_default(value: str, name: str) -> str:
    # nothing to plan against on a CPU: `auto` is TrialConfig's default
    return TRIAL_DEFAULTS[name] if value == AUTO else value


def _check_batch_split(depth: int, batch_size: int, micro_batch_size: int | str, ranks: int, device: str) -> None:
    """The batch splits into whole per-rank shares and those into whole micro-batches."""
    if batch_size % ranks:
        raise ConfigError(
            f"recipe.batch_size: {batch_size} at depth {depth} does not split over the {ranks} GPUs of "
            f"resources.gpus; use a multiple of {ranks}"
        )
    share = batch_size // ranks
    if micro_batch_size != AUTO and share % micro_batch_size:
        divisors = [size for size in range(1, share + 1) if share % size == 0]
        over = (
            f"per-GPU share of recipe.batch_size {batch_size} over {ranks} GPU(s)"
            if device == "cuda"
            else (f"per-process share of recipe.batch_size {batch_size} over {ranks} process(es) on {device}")
        )
        raise ConfigError(
            f"recipe.micro_batch_size: {micro_batch_size} at depth {depth} does not divide the {over} "
            f"({share} images); use auto or one of {divisors}"
        )


def plan_execution(spec: StudySpec, depth: int, var_config: VARConfig, gpus: float, trials: str) -> TrialExecution:
    """The execution of the trials at `depth` (named by `trials` in errors); ConfigError with
    the numbers when they cannot fit their GPUs."""
    device = trial_device(spec, gpus)
    batch_size = spec.recipe.batch_size.at(depth)
    micro_batch_size = spec.recipe.micro_batch_size.at(depth)
    checkpointing = spec.recipe.activation_checkpointing.at(depth)
    sharding = spec.recipe.sharding.at(depth)
    attention = _attention_on(spec, device, trials)
    compile_model = device == "cuda" if spec.recipe.compile == AUTO else spec.recipe.compile
    ranks = world_size(gpus)
    _check_batch_split(depth, batch_size, micro_batch_size, ranks, device)
    if device == "cpu":
        micro = None if micro_batch_size == AUTO else micro_batch_size
        return TrialExecution(
            device=device,
            micro_batch_size=micro,
            accumulation_steps=batch_size // (micro * ranks) if micro else 1,
            activation_checkpointing=_written_or_default(checkpointing, "activation_checkpointing"),
            sharding=_written_or_default(sharding, "sharding"),
            attention=attention,
            compile=compile_model,
            plan=None,
        )
    memory_bytes = spec.resources.gpu_memory_gb * BYTES_PER_GB * (min(gpus, 1.0) if gpus > 0 else 1.0)
    try:
        plan = choose_execution(
            var_config,
            global_batch=batch_size,
            world_size=ranks,
            gpu_memory_bytes=memory_bytes,
            precision=trial_precision(spec),
            micro_batch_size=micro_batch_size,
            activation_checkpointing=checkpointing,
            sharding=sharding,
            attention=attention,
        )
    except ConfigError as error:
        raise ConfigError(
            f"{trials} (depth {depth}, recipe.batch_size {batch_size} over {ranks} GPU(s) of "
            f"resources.gpu_memory_gb {spec.resources.gpu_memory_gb:g}, {trial_precision(spec)}): {error}"
        ) from None
    return TrialExecution(
        device=device,
        micro_batch_size=plan.micro_batch_size,
        accumulation_steps=plan.accumulation_steps,
        activation_checkpointing=plan.activation_checkpointing,
        sharding=plan.sharding,
        attention=attention,
        compile=compile_model,
        plan=plan,
    )
