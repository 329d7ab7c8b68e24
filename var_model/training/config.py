"""`TrialConfig`: everything one trial needs, as a frozen, validated dataclass.

    token_cache: /path/to/cache   # a directory built by var_model.tokenizer.build_token_cache
    output_dir: runs/d4           # checkpoint.pt, metrics.jsonl, result.json, samples.png
    model: {depth: 4}             # VARConfig fields; the tokenizer's fields come from the cache
    budget_kind: images           # flops | images | tokens
    budget_value: 20000

The VAR's codebook size, latent channels, scales and class count are not trial choices: they
are read from the token cache, so `model` may not set them.

A trial has one of three roles (`TrialConfig.role`, see training/forks.py for the files):
- "independent": trains its budget from step 0 (every trial before cooldown branches).
- "trunk" (`fork_budgets` set): the shared prefix of the wsd runs of those budgets. It trains
  warm-up then the peak LR up to the fork step of its largest budget (`budget_value`, which
  must be that largest one), writing an immutable fork checkpoint at each budget's fork step.
- "branch" (`fork_path`, `fork_sha256`, `fork_step` set): starts from a trunk's fork (hash
  checked) and trains the cooldown of its `budget_value` to that budget's last step; it equals
  the independent wsd run of its budget bit for bit.
Trunks and branches need schedule wsd, a decay_fraction in (0, 1), and a warm-up fixed in
steps (`warmup_steps`), so that every budget of a trunk shares its warm-up.

Beside it: the allowed values in config_choices.py, the checks `__post_init__` runs in
config_checks.py, and the fields a resume or a branch may change in config_comparison.py.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from var_model.config import VARConfig
from var_model.errors import ConfigError
from var_model.training.config_checks import check_trial_config
from var_model.training.config_choices import DIVERGENCE_MULTIPLE_OF_UNIFORM_LOSS


@dataclass(frozen=True)
class TrialConfig:
    """One trial. Fields (defaults in brackets):

    token_cache, output_dir: paths (required).
    model [{"depth": 2}]: VARConfig fields, minus those in FROM_TOKEN_CACHE (config_choices.py).
    budget_kind ["images"], budget_value [10000]: the compute budget C.
    batch_size [64]: global batch (split over ranks under torchrun).
    base_lr [1e-4]: lr = base_lr * batch_size / 256 (the paper's tblr).
    schedule ["paper"]: paper | cosine | wsd | constant (see training/schedules.py).
    warmup_fraction [0.02], warmup_start_factor [0.005], final_lr_fraction [0.1],
    flat_fraction [0.05] (paper), decay_fraction [0.2] (wsd cool-down),
    decay_shape ["linear"]: linear | sqrt | cosine (the wsd cool-down's shape).
    warmup_steps [None]: a warm-up fixed in steps; None = warmup_fraction of the trial's steps.
    fork_budgets [()]: makes the trial a trunk of these budgets (see the module docstring).
    fork_path, fork_sha256, fork_step [None]: make the trial a branch of that fork.
    weight_decay [0.05], beta1 [0.9], beta2 [0.95], grad_clip [2.0] (0 = off).
    seed [0]: model init, class dropout, data order.
    log_every [10]: steps between train-metric points.
    eval_every [0]: steps between test evaluations (0 = only at the end).
    eval_images [None]: evaluate on the first N test rows (None = all).
    eval_batch_size [256].
    checkpoint_every [0]: steps between checkpoints (0 = only at the end).
    device ["auto"], threads [1] (torch intra-op threads; 0 = torch's default),
    precision ["bf16"]: autocast dtype on CUDA (fp16 adds a GradScaler); CPU runs fp32.
    divergence_loss [None]: a train loss above this (or NaN/inf) ends the trial "diverged";
    None = DIVERGENCE_MULTIPLE_OF_UNIFORM_LOSS x ln(codebook size) of the cache; inf = off.
    sample_grid [False], samples_per_class [4], sample_cfg [1.5], sample_top_k [0 = all],
    sample_top_p [0.96]: an end-of-trial PNG grid (output_dir/samples.png).

    Execution choices (they change memory and speed, not the update; a trial may resume with
    other values, e.g. on other hardware):
    micro_batch_size [None]: images per device per forward/backward; None = the rank's whole
    share of batch_size. Gradients of batch_size / (micro_batch_size x world size) micro-batches
    are accumulated into one update equal to the full-batch one (a remainder is an error).
    activation_checkpointing ["none"]: none | blocks (recompute each transformer block in the
    backward instead of storing its activations).
    sharding ["ddp"]: ddp | fsdp, with several processes: replicated weights, or FSDP2 sharding
    of weights, gradients and optimizer states per transformer block. One process: both mean
    plain single-device training.
    compile ["auto"]: true | false | auto (on for CUDA, off on CPU): torch.compile each block.
    attention ["auto"]: auto | sdpa | scalewise | flex (auto = var_model.attention.default_attention_kernel
    for the device).
    """

    token_cache: str
    output_dir: str
    model: dict[str, Any] = field(default_factory=lambda: {"depth": 2})
    budget_kind: str = "images"
    budget_value: float = 10_000
    batch_size: int = 64
    base_lr: float = 1e-4
    schedule: str = "paper"
    warmup_fraction: float = 0.02
    warmup_start_factor: float = 0.005
    final_lr_fraction: float = 0.1
    flat_fraction: float = 0.05
    decay_fraction: float = 0.2
    decay_shape: str = "linear"
    warmup_steps: int | None = None
    fork_budgets: tuple[float, ...] = ()
    fork_path: str | None = None
    fork_sha256: str | None = None
    fork_step: int | None = None
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 2.0
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0
    eval_images: int | None = None
    eval_batch_size: int = 256
    checkpoint_every: int = 0
    device: str = "auto"
    threads: int = 1
    precision: str = "bf16"
    divergence_loss: float | None = None
    sample_grid: bool = False
    samples_per_class: int = 4
    sample_cfg: float = 1.5
    sample_top_k: int = 0
    sample_top_p: float = 0.96
    # sample quality at the end (var_model.evaluation.EvaluationConfig fields; None = off),
    # checked when the trial starts, before any training
    evaluation: dict[str, Any] | None = None
    micro_batch_size: int | None = None
    activation_checkpointing: str = "none"
    sharding: str = "ddp"
    compile: bool | str = "auto"
    attention: str = "auto"

    def __post_init__(self) -> None:
        # the checks live in config_checks.py; frozen, so the normalised fork_budgets (a YAML
        # list as the tuple the field holds) is set through object.__setattr__
        object.__setattr__(self, "fork_budgets", check_trial_config(self))

    @property
    def role(self) -> str:
        """One of TRIAL_ROLES: "trunk" with fork_budgets, "branch" with a fork_path."""
        if self.fork_budgets:
            return "trunk"
        return "branch" if self.fork_path is not None else "independent"

    def divergence_limit(self, codebook_size: int) -> float:
        """The train loss above which the trial ends "diverged": `divergence_loss`, or by default
        DIVERGENCE_MULTIPLE_OF_UNIFORM_LOSS x ln(codebook_size) (see that constant for why)."""
        if self.divergence_loss is not None:
            return float(self.divergence_loss)
        return DIVERGENCE_MULTIPLE_OF_UNIFORM_LOSS * math.log(codebook_size)

    @property
    def peak_lr(self) -> float:
        """The paper's scaling: lr = base_lr * batch / 256."""
        return self.base_lr * self.batch_size / 256

    def var_config(self, tokenizer_config: Any, num_classes: int) -> VARConfig:
        """The VAR of this trial, matched to the cache's tokenizer and classes."""
        return VARConfig.for_vqvae(tokenizer_config, num_classes=num_classes, **self.model)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["model"] = dict(self.model)
        values["fork_budgets"] = list(self.fork_budgets)  # YAML and JSON know lists, not tuples
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrialConfig":
        if not isinstance(values, dict):
            raise ConfigError(f"a trial config must be a mapping, got {type(values).__name__}")
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown trial config keys {unknown}; allowed: {sorted(known)}")
        missing = [name for name in ("token_cache", "output_dir") if name not in values]
        if missing:
            raise ConfigError(f"trial config lacks required keys {missing}")
        values = dict(values)
        for name in ("budget_value", "base_lr", "divergence_loss"):
            # YAML reads 1e12 (no dot) as a string; accept it as the number it means.
            if isinstance(values.get(name), str):
                try:
                    values[name] = float(values[name])
                except ValueError:
                    raise ConfigError(f"{name} is {values[name]!r}; it must be a number") from None
        if isinstance(values.get("fork_budgets"), list):
            try:
                values["fork_budgets"] = [
                    float(value) if isinstance(value, str) else value for value in values["fork_budgets"]
                ]
            except ValueError:
                raise ConfigError(f"fork_budgets is {values['fork_budgets']!r}; it must be a list of numbers") from None
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrialConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"trial config file {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise ConfigError(f"trial config {path} is not valid YAML: {error}") from error
        values = values or {}
        return cls.from_dict(values)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")

    def replace(self, **changes: Any) -> "TrialConfig":
        return dataclasses.replace(self, **changes)
