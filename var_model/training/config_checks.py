"""The checks a `TrialConfig` passes when it is built: every field's type and range, the
execution choices, and the fields each role (independent, trunk, branch) needs.

The config is typed `Any` here: config.py calls these checks from `__post_init__`, and an
import of TrialConfig back, even a type-only one, would be an import cycle.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from var_model.config import VARConfig
from var_model.errors import ConfigError
from var_model.training.budget import BUDGET_KINDS
from var_model.training.config_choices import (
    ACTIVATION_CHECKPOINTING,
    ATTENTION_CHOICES,
    DIVERGENCE_MULTIPLE_OF_UNIFORM_LOSS,
    FROM_TOKEN_CACHE,
    PRECISIONS,
    SHA256_HEX_DIGITS,
    SHARDINGS,
)
from var_model.training.schedules import DECAY_SHAPES, SCHEDULES


def check_trial_config(config: Any) -> tuple[float, ...]:
    """Raise a ConfigError naming the first wrong field of `config` (a TrialConfig); return its
    fork_budgets as the tuple of floats the frozen field is to hold."""
    for name in ("token_cache", "output_dir"):
        value = getattr(config, name)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} is {value!r}; it must be a non-empty path string")
    if not isinstance(config.model, dict):
        raise ConfigError(f"model is {config.model!r}; it must be a mapping of VARConfig fields")
    known = {item.name for item in dataclasses.fields(VARConfig)} - set(FROM_TOKEN_CACHE)
    fixed = sorted(set(config.model) & set(FROM_TOKEN_CACHE))
    if fixed:
        raise ConfigError(f"model sets {fixed}, which come from the token cache; remove them")
    unknown = sorted(set(config.model) - known)
    if unknown:
        raise ConfigError(f"unknown model keys {unknown}; allowed: {sorted(known)}")
    if "depth" not in config.model:
        raise ConfigError("model.depth is required (it sets the VAR's size)")
    if config.budget_kind not in BUDGET_KINDS:
        raise ConfigError(f"budget_kind is {config.budget_kind!r}; allowed: {', '.join(BUDGET_KINDS)}")
    _positive("budget_value", config.budget_value)
    _positive("base_lr", config.base_lr)
    if config.schedule not in SCHEDULES:
        raise ConfigError(f"schedule is {config.schedule!r}; allowed: {', '.join(SCHEDULES)}")
    for name in (
        "warmup_fraction",
        "warmup_start_factor",
        "final_lr_fraction",
        "flat_fraction",
        "decay_fraction",
        "sample_top_p",
    ):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
            raise ConfigError(f"{name} is {value!r}; allowed range [0, 1]")
    for name in ("beta1", "beta2"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
            raise ConfigError(f"{name} is {value!r}; allowed range [0, 1)")
    for name in ("weight_decay", "grad_clip", "sample_cfg"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
            raise ConfigError(f"{name} is {value!r}; it must be a finite number >= 0")
    for name in ("batch_size", "log_every", "eval_batch_size", "samples_per_class"):
        _integer(config, name, minimum=1)
    for name in ("seed", "eval_every", "checkpoint_every", "threads", "sample_top_k"):
        _integer(config, name, minimum=0)
    if config.eval_images is not None:
        _integer(config, "eval_images", minimum=1)
    if config.precision not in PRECISIONS:
        raise ConfigError(f"precision is {config.precision!r}; allowed: {', '.join(PRECISIONS)}")
    if config.divergence_loss is not None and not (
        isinstance(config.divergence_loss, (int, float))
        and not isinstance(config.divergence_loss, bool)
        and config.divergence_loss > 0
    ):
        raise ConfigError(
            f"divergence_loss is {config.divergence_loss!r}; it must be > 0 (inf = off, null = "
            f"{DIVERGENCE_MULTIPLE_OF_UNIFORM_LOSS:g} x ln(codebook size))"
        )
    if not isinstance(config.sample_grid, bool):
        raise ConfigError(f"sample_grid is {config.sample_grid!r}; use true or false")
    if not isinstance(config.device, str) or not (
        config.device in ("auto", "cpu", "cuda") or config.device.startswith("cuda:")
    ):
        raise ConfigError(f"device is {config.device!r}; allowed: auto, cpu, cuda, cuda:N")
    _check_execution_choices(config)
    return _check_role(config)


def _check_role(config: Any) -> tuple[float, ...]:
    if config.decay_shape not in DECAY_SHAPES:
        raise ConfigError(f"decay_shape is {config.decay_shape!r}; allowed: {', '.join(DECAY_SHAPES)}")
    if config.warmup_steps is not None:
        _integer(config, "warmup_steps", minimum=0)
    if not isinstance(config.fork_budgets, (list, tuple)):
        raise ConfigError(f"fork_budgets is {config.fork_budgets!r}; it must be a list of budget values")
    for value in config.fork_budgets:
        _positive("fork_budgets", value)
    # one form for a YAML list and a tuple (equality and hashing of the frozen config need it)
    fork_budgets = tuple(float(value) for value in config.fork_budgets)
    if len(set(fork_budgets)) != len(fork_budgets):
        raise ConfigError(f"fork_budgets {list(fork_budgets)} repeats a budget; list each once")
    branch_fields = {"fork_path": config.fork_path, "fork_sha256": config.fork_sha256, "fork_step": config.fork_step}
    given = sorted(name for name, value in branch_fields.items() if value is not None)
    if given and len(given) < len(branch_fields):
        raise ConfigError(
            f"a branch sets {given} but not {sorted(set(branch_fields) - set(given))}; "
            "a branch names its fork by path, sha256 and step (all three)"
        )
    if config.role == "independent":
        return fork_budgets
    if given and fork_budgets:
        raise ConfigError("a trial sets both fork_budgets (a trunk) and fork_path (a branch); it is one or the other")
    if config.schedule != "wsd":
        raise ConfigError(
            f"schedule is {config.schedule!r}; a {config.role} needs schedule wsd (cooldown branches "
            "fork the stable phase)"
        )
    if not 0.0 < config.decay_fraction < 1.0:
        raise ConfigError(f"decay_fraction is {config.decay_fraction!r}; a {config.role} needs it in (0, 1)")
    if config.warmup_steps is None:
        raise ConfigError(
            f"warmup_steps is None; a {config.role} needs a warm-up fixed in steps, the same for "
            "every budget of its trunk (e.g. the smallest budget's warmup_fraction of its steps)"
        )
    if config.role == "trunk" and config.budget_value != max(fork_budgets):
        raise ConfigError(
            f"budget_value is {config.budget_value!r}, but a trunk's budget_value is the largest of "
            f"its fork_budgets ({max(fork_budgets):g}); set it to that"
        )
    if config.role == "branch":
        if not isinstance(config.fork_path, str) or not config.fork_path:
            raise ConfigError(f"fork_path is {config.fork_path!r}; it must be the path of a fork checkpoint")
        digest = config.fork_sha256
        if not (
            isinstance(digest, str)
            and len(digest) == SHA256_HEX_DIGITS
            and all(character in "0123456789abcdef" for character in digest)
        ):
            raise ConfigError(f"fork_sha256 is {digest!r}; it must be the fork's sha256 as 64 lowercase hex digits")
        _integer(config, "fork_step", minimum=1)
    return fork_budgets


def _check_execution_choices(config: Any) -> None:
    if config.micro_batch_size is not None:
        _integer(config, "micro_batch_size", minimum=1)
        if config.batch_size % config.micro_batch_size:
            raise ConfigError(
                f"micro_batch_size {config.micro_batch_size} does not divide batch_size {config.batch_size}; "
                "use a divisor of batch_size / world size, or null for no accumulation"
            )
    for name, allowed in (
        ("activation_checkpointing", ACTIVATION_CHECKPOINTING),
        ("sharding", SHARDINGS),
        ("attention", ATTENTION_CHOICES),
    ):
        value = getattr(config, name)
        if value not in allowed:
            raise ConfigError(f"{name} is {value!r}; allowed: {', '.join(allowed)}")
    if not (isinstance(config.compile, bool) or config.compile == "auto"):
        raise ConfigError(f"compile is {config.compile!r}; allowed: true, false, auto")


def _positive(name: str, value: Any) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} is {value!r}; it must be a positive finite number")


def _integer(config: Any, name: str, minimum: int) -> None:
    value = getattr(config, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} is {value!r}; it must be an integer >= {minimum}")
