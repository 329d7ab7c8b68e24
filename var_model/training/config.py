"""`TrialConfig`: everything one trial needs, as a frozen, validated dataclass.

    token_cache: /path/to/cache   # a directory built by var_model.tokenizer.build_token_cache
    output_dir: runs/d4           # checkpoint.pt, metrics.jsonl, result.json, samples.png
    model: {depth: 4}             # VARConfig fields; the tokenizer's fields come from the cache
    budget_kind: images           # flops | images | tokens
    budget_value: 20000

The VAR's codebook size, latent channels, scales and class count are not trial choices: they
are read from the token cache, so `model` may not set them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from var_model.attention import ATTENTION_KERNELS
from var_model.config import VARConfig
from var_model.errors import ConfigError
from var_model.training.budget import BUDGET_KINDS
from var_model.training.schedules import SCHEDULES

FROM_TOKEN_CACHE = ("codebook_size", "latent_channels", "patch_nums", "num_classes")
PRECISIONS = ("bf16", "fp16", "fp32")
# Execution choices: where and how fast a trial runs, never what it computes ("auto" is
# resolved against the device at build time, see training/setup.py).
ACTIVATION_CHECKPOINTING = ("none", "blocks")
SHARDINGS = ("ddp", "fsdp")
ATTENTION_CHOICES = ("auto", *ATTENTION_KERNELS)


@dataclass(frozen=True)
class TrialConfig:
    """One trial. Fields (defaults in brackets):

    token_cache, output_dir: paths (required).
    model [{"depth": 2}]: VARConfig fields, minus those in FROM_TOKEN_CACHE.
    budget_kind ["images"], budget_value [10000]: the compute budget C.
    batch_size [64]: global batch (split over ranks under torchrun).
    base_lr [1e-4]: lr = base_lr * batch_size / 256 (the paper's tblr).
    schedule ["paper"]: paper | cosine | wsd | constant (see training/schedules.py).
    warmup_fraction [0.02], warmup_start_factor [0.005], final_lr_fraction [0.1],
    flat_fraction [0.05] (paper), decay_fraction [0.2] (wsd cool-down).
    weight_decay [0.05], beta1 [0.9], beta2 [0.95], grad_clip [2.0] (0 = off).
    seed [0]: model init, class dropout, data order.
    log_every [10]: steps between train-metric points.
    eval_every [0]: steps between test evaluations (0 = only at the end).
    eval_images [None]: evaluate on the first N test rows (None = all).
    eval_batch_size [256].
    checkpoint_every [0]: steps between checkpoints (0 = only at the end).
    device ["auto"], threads [1] (torch intra-op threads; 0 = torch's default),
    precision ["bf16"]: autocast dtype on CUDA (fp16 adds a GradScaler); CPU runs fp32.
    divergence_loss [inf]: a train loss above this (or NaN/inf) ends the trial "diverged".
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
    attention ["auto"]: auto | sdpa | flex (auto = var_model.attention.default_attention_kernel
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
    divergence_loss: float = math.inf
    sample_grid: bool = False
    samples_per_class: int = 4
    sample_cfg: float = 1.5
    sample_top_k: int = 0
    sample_top_p: float = 0.96
    micro_batch_size: int | None = None
    activation_checkpointing: str = "none"
    sharding: str = "ddp"
    compile: bool | str = "auto"
    attention: str = "auto"

    def __post_init__(self) -> None:
        for name in ("token_cache", "output_dir"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{name} is {value!r}; it must be a non-empty path string")
        if not isinstance(self.model, dict):
            raise ConfigError(f"model is {self.model!r}; it must be a mapping of VARConfig fields")
        known = {item.name for item in dataclasses.fields(VARConfig)} - set(FROM_TOKEN_CACHE)
        fixed = sorted(set(self.model) & set(FROM_TOKEN_CACHE))
        if fixed:
            raise ConfigError(f"model sets {fixed}, which come from the token cache; remove them")
        unknown = sorted(set(self.model) - known)
        if unknown:
            raise ConfigError(f"unknown model keys {unknown}; allowed: {sorted(known)}")
        if "depth" not in self.model:
            raise ConfigError("model.depth is required (it sets the VAR's size)")
        if self.budget_kind not in BUDGET_KINDS:
            raise ConfigError(f"budget_kind is {self.budget_kind!r}; allowed: {', '.join(BUDGET_KINDS)}")
        _positive(self, "budget_value", self.budget_value)
        _positive(self, "base_lr", self.base_lr)
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule is {self.schedule!r}; allowed: {', '.join(SCHEDULES)}")
        for name in ("warmup_fraction", "warmup_start_factor", "final_lr_fraction",
                     "flat_fraction", "decay_fraction", "sample_top_p"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ConfigError(f"{name} is {value!r}; allowed range [0, 1]")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
                raise ConfigError(f"{name} is {value!r}; allowed range [0, 1)")
        for name in ("weight_decay", "grad_clip", "sample_cfg"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} is {value!r}; it must be a finite number >= 0")
        for name in ("batch_size", "log_every", "eval_batch_size", "samples_per_class"):
            _integer(self, name, minimum=1)
        for name in ("seed", "eval_every", "checkpoint_every", "threads", "sample_top_k"):
            _integer(self, name, minimum=0)
        if self.eval_images is not None:
            _integer(self, "eval_images", minimum=1)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision is {self.precision!r}; allowed: {', '.join(PRECISIONS)}")
        if not (isinstance(self.divergence_loss, (int, float)) and self.divergence_loss > 0):
            raise ConfigError(f"divergence_loss is {self.divergence_loss!r}; it must be > 0 (inf = off)")
        if not isinstance(self.sample_grid, bool):
            raise ConfigError(f"sample_grid is {self.sample_grid!r}; use true or false")
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        ):
            raise ConfigError(f"device is {self.device!r}; allowed: auto, cpu, cuda, cuda:N")
        self._check_execution_choices()

    def _check_execution_choices(self) -> None:
        if self.micro_batch_size is not None:
            _integer(self, "micro_batch_size", minimum=1)
            if self.batch_size % self.micro_batch_size:
                raise ConfigError(
                    f"micro_batch_size {self.micro_batch_size} does not divide batch_size {self.batch_size}; "
                    "use a divisor of batch_size / world size, or null for no accumulation"
                )
        for name, allowed in (("activation_checkpointing", ACTIVATION_CHECKPOINTING), ("sharding", SHARDINGS),
                              ("attention", ATTENTION_CHOICES)):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{name} is {value!r}; allowed: {', '.join(allowed)}")
        if not (isinstance(self.compile, bool) or self.compile == "auto"):
            raise ConfigError(f"compile is {self.compile!r}; allowed: true, false, auto")

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


def _positive(config: TrialConfig, name: str, value: Any) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} is {value!r}; it must be a positive finite number")


def _integer(config: TrialConfig, name: str, minimum: int) -> None:
    value = getattr(config, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} is {value!r}; it must be an integer >= {minimum}")
