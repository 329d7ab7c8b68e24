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
from var_model.training.schedules import DECAY_SHAPES, SCHEDULES

FROM_TOKEN_CACHE = ("codebook_size", "latent_channels", "patch_nums", "num_classes")
PRECISIONS = ("bf16", "fp16", "fp32")
# Execution choices: where and how fast a trial runs, never what it computes ("auto" is
# resolved against the device at build time, see training/setup.py).
ACTIVATION_CHECKPOINTING = ("none", "blocks")
SHARDINGS = ("ddp", "fsdp")
ATTENTION_CHOICES = ("auto", *ATTENTION_KERNELS)
TRIAL_ROLES = ("independent", "trunk", "branch")
# The default divergence bound, as a multiple of ln(codebook size). A uniform guess over the V
# codes costs ln V nats per token, and a freshly initialised VAR starts there; learning only
# brings the loss down. A train-loss window averaging 2 ln V means the right token got, on
# average, a probability below 1/V^2: confidently wrong, which only an unstable update does
# (a probe's lr-1000 trials sat at ~180x ln V and were reported completed). Twice, not just
# ln V: a healthy run's first window and its loss spikes may pass ln V for a moment.
DIVERGENCE_MULTIPLE_OF_UNIFORM_LOSS = 2.0
# Fields that may differ between a checkpoint's config and the resuming one: they change
# where and how fast a trial runs, never what it computes. divergence_loss is a stop rule, not
# part of the update (a run below both limits computes the same), and trials written while its
# default was inf must still resume and count as finished.
RESUME_FREE_FIELDS = (
    "divergence_loss",
    "token_cache",
    "output_dir",
    "device",
    "threads",
    "eval_batch_size",
    "checkpoint_every",
    "sample_grid",
    "samples_per_class",
    "sample_cfg",
    "sample_top_k",
    "sample_top_p",
    "micro_batch_size",
    "activation_checkpointing",
    "sharding",
    "compile",
    "attention",
)
# Fields in which a branch may differ from the trunk that wrote its fork (besides the
# resume-free ones): its budget, its fork, and the shape of its cooldown, none of which the
# trunk's steps depend on (so one trunk can serve linear and sqrt cooldowns alike).
BRANCH_FREE_FIELDS = (
    "budget_value",
    "fork_budgets",
    "fork_path",
    "fork_sha256",
    "fork_step",
    "decay_shape",
    "final_lr_fraction",
)
SHA256_HEX_DIGITS = 64


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
        for name in (
            "warmup_fraction",
            "warmup_start_factor",
            "final_lr_fraction",
            "flat_fraction",
            "decay_fraction",
            "sample_top_p",
        ):
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
        if self.divergence_loss is not None and not (
            isinstance(self.divergence_loss, (int, float))
            and not isinstance(self.divergence_loss, bool)
            and self.divergence_loss > 0
        ):
            raise ConfigError(
                f"divergence_loss is {self.divergence_loss!r}; it must be > 0 (inf = off, null = "
                f"{DIVERGENCE_MULTIPLE_OF_UNIFORM_LOSS:g} x ln(codebook size))"
            )
        if not isinstance(self.sample_grid, bool):
            raise ConfigError(f"sample_grid is {self.sample_grid!r}; use true or false")
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        ):
            raise ConfigError(f"device is {self.device!r}; allowed: auto, cpu, cuda, cuda:N")
        self._check_execution_choices()
        self._check_role()

    def _check_role(self) -> None:
        if self.decay_shape not in DECAY_SHAPES:
            raise ConfigError(f"decay_shape is {self.decay_shape!r}; allowed: {', '.join(DECAY_SHAPES)}")
        if self.warmup_steps is not None:
            _integer(self, "warmup_steps", minimum=0)
        if not isinstance(self.fork_budgets, (list, tuple)):
            raise ConfigError(f"fork_budgets is {self.fork_budgets!r}; it must be a list of budget values")
        for value in self.fork_budgets:
            _positive(self, "fork_budgets", value)
        # frozen: normalise a YAML list to the tuple the field holds (equality and hashing need one form)
        object.__setattr__(self, "fork_budgets", tuple(float(value) for value in self.fork_budgets))
        if len(set(self.fork_budgets)) != len(self.fork_budgets):
            raise ConfigError(f"fork_budgets {list(self.fork_budgets)} repeats a budget; list each once")
        branch_fields = {"fork_path": self.fork_path, "fork_sha256": self.fork_sha256, "fork_step": self.fork_step}
        given = sorted(name for name, value in branch_fields.items() if value is not None)
        if given and len(given) < len(branch_fields):
            raise ConfigError(
                f"a branch sets {given} but not {sorted(set(branch_fields) - set(given))}; "
                "a branch names its fork by path, sha256 and step (all three)"
            )
        if self.role == "independent":
            return
        if given and self.fork_budgets:
            raise ConfigError(
                "a trial sets both fork_budgets (a trunk) and fork_path (a branch); it is one or the other"
            )
        if self.schedule != "wsd":
            raise ConfigError(
                f"schedule is {self.schedule!r}; a {self.role} needs schedule wsd (cooldown branches "
                "fork the stable phase)"
            )
        if not 0.0 < self.decay_fraction < 1.0:
            raise ConfigError(f"decay_fraction is {self.decay_fraction!r}; a {self.role} needs it in (0, 1)")
        if self.warmup_steps is None:
            raise ConfigError(
                f"warmup_steps is None; a {self.role} needs a warm-up fixed in steps, the same for "
                "every budget of its trunk (e.g. the smallest budget's warmup_fraction of its steps)"
            )
        if self.role == "trunk" and self.budget_value != max(self.fork_budgets):
            raise ConfigError(
                f"budget_value is {self.budget_value!r}, but a trunk's budget_value is the largest of "
                f"its fork_budgets ({max(self.fork_budgets):g}); set it to that"
            )
        if self.role == "branch":
            if not isinstance(self.fork_path, str) or not self.fork_path:
                raise ConfigError(f"fork_path is {self.fork_path!r}; it must be the path of a fork checkpoint")
            digest = self.fork_sha256
            if not (
                isinstance(digest, str)
                and len(digest) == SHA256_HEX_DIGITS
                and all(character in "0123456789abcdef" for character in digest)
            ):
                raise ConfigError(f"fork_sha256 is {digest!r}; it must be the fork's sha256 as 64 lowercase hex digits")
            _integer(self, "fork_step", minimum=1)

    def _check_execution_choices(self) -> None:
        if self.micro_batch_size is not None:
            _integer(self, "micro_batch_size", minimum=1)
            if self.batch_size % self.micro_batch_size:
                raise ConfigError(
                    f"micro_batch_size {self.micro_batch_size} does not divide batch_size {self.batch_size}; "
                    "use a divisor of batch_size / world size, or null for no accumulation"
                )
        for name, allowed in (
            ("activation_checkpointing", ACTIVATION_CHECKPOINTING),
            ("sharding", SHARDINGS),
            ("attention", ATTENTION_CHOICES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{name} is {value!r}; allowed: {', '.join(allowed)}")
        if not (isinstance(self.compile, bool) or self.compile == "auto"):
            raise ConfigError(f"compile is {self.compile!r}; allowed: true, false, auto")

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


def differing_fields(first: dict[str, Any], second: dict[str, Any], free: tuple[str, ...]) -> list[str]:
    """The config fields (of two `to_dict()`s) whose values differ, ignoring those in `free`.
    A field missing from one (a file written before the field existed) counts as its default."""
    first, second = {**_DEFAULTS_AS_WRITTEN, **first}, {**_DEFAULTS_AS_WRITTEN, **second}
    return sorted(key for key in set(first) | set(second) if key not in free and first.get(key) != second.get(key))


# the defaults as `to_dict` writes them (a tuple as a list)
_DEFAULTS_AS_WRITTEN = {
    item.name: list(item.default) if isinstance(item.default, tuple) else item.default
    for item in dataclasses.fields(TrialConfig)
    if item.default is not dataclasses.MISSING
}


def _positive(config: TrialConfig, name: str, value: Any) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} is {value!r}; it must be a positive finite number")


def _integer(config: TrialConfig, name: str, minimum: int) -> None:
    value = getattr(config, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} is {value!r}; it must be an integer >= {minimum}")
