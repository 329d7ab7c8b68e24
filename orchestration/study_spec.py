"""The study specification: frozen, validated dataclasses parsed strictly from a study YAML.

    spec = load_study("studies/smoke.yaml", overrides=["model.depths=[2,3]"])

Every section of the file has one dataclass here; `orchestration.spec_parser` turns YAML into
them, and the per-trial numbers (width, params, steps, lr) come from `orchestration.trials`.
Every key is described in docs/STUDIES.md (the user-facing reference).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from var_model.errors import ConfigError
from var_model.training.schedules import SCHEDULES  # noqa: F401  (re-exported for the parser)

from var_model.data.config import DataConfig

from orchestration.depth_rule import DepthRule

STUDY_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
BUDGET_KINDS = ("flops", "images", "tokens")
TOKENIZER_KINDS = ("train", "load_official")
TOKENIZER_PRESETS = ("debug", "official")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TokenizerSpec:
    kind: str  # train | load_official
    preset: str = "debug"  # which VQVAEConfig to start from: debug (tiny, CPU) or official (VAR's)
    overrides: dict = field(default_factory=dict)  # VQVAEConfig fields changed from the preset
    training: dict = field(default_factory=dict)  # var_model.tokenizer.TokenizerTrainingConfig fields
    vqvae_path: str | None = None  # kind load_official: the released vae_ch160v4096z32.pth
    encode_batch_size: int = 128

    def __post_init__(self):
        if self.kind == "load_official" and not self.vqvae_path:
            raise ConfigError("tokenizer.vqvae_path: required when tokenizer.kind is load_official")
        if self.kind == "load_official" and self.preset != "official":
            raise ConfigError(
                f"tokenizer.preset: official weights need the official architecture, got {self.preset!r}"
            )


@dataclass(frozen=True)
class ModelSpec:
    depths: tuple[int, ...]
    # VAR: width C = 64 * depth and head dim 64 (VAR_SPEC section 2, paper section 4).
    width_per_depth: int = 64
    head_dim: int = 64
    patch_nums: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
    num_classes: int = 1  # classes the VAR conditions on (from data.num_classes unless given)
    overrides: dict = field(default_factory=dict)  # extra VARConfig fields (e.g. drop_path_rate)

    def __post_init__(self):
        if not self.depths:
            raise ConfigError("model.depths: must list at least one depth, got []")
        if len(set(self.depths)) != len(self.depths):
            raise ConfigError(f"model.depths: depths must be distinct, got {list(self.depths)}")
        if self.width_per_depth % self.head_dim:
            raise ConfigError(
                f"model.width_per_depth: {self.width_per_depth} must be a multiple of "
                f"model.head_dim ({self.head_dim}) so every width splits into whole heads"
            )
        if list(self.patch_nums) != sorted(set(self.patch_nums)):
            raise ConfigError(f"model.patch_nums: must be strictly increasing, got {list(self.patch_nums)}")


@dataclass(frozen=True)
class BudgetSpec:
    kind: str  # flops | images | tokens (training compute per trial)
    grid: tuple[float, ...] | None = None  # the same budgets for every depth
    per_depth: dict[int, tuple[float, ...]] | None = None  # {depth: budgets}

    def __post_init__(self):
        if (self.grid is None) == (self.per_depth is None):
            raise ConfigError("budgets.values: give either a list (a grid) or a mapping {depth: [budgets]}")

    def for_depth(self, depth: int) -> tuple[float, ...]:
        if self.grid is not None:
            return self.grid
        if depth not in self.per_depth:
            raise ConfigError(
                f"budgets.values: no budgets for depth {depth}; the mapping has depths {sorted(self.per_depth)}"
            )
        return self.per_depth[depth]


@dataclass(frozen=True)
class RecipeSpec:
    """Training hyper-parameters as rules of depth; each default cites its source."""

    batch_size: DepthRule
    # VAR_SPEC section 4: lr = tblr * batch / 256 with tblr 1e-4 (8e-5 for d24 and d30).
    base_lr: DepthRule
    # VAR_SPEC section 4: warm-up over ep/50 epochs, i.e. the first 1/50 of training.
    warmup_fraction: float = 0.02
    schedule: str = "paper"  # VAR release: warm-up, flat 5%, linear decay to final_lr_fraction
    # VAR_SPEC section 4: wpe 0.1 for d16/d20, 0.01 for d24/d30.
    final_lr_fraction: DepthRule = DepthRule.constant(0.1, "recipe.final_lr_fraction")
    weight_decay: float = 0.05  # VAR_SPEC section 4
    grad_clip: float = 2.0  # VAR_SPEC section 4

    def __post_init__(self):
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"recipe.warmup_fraction: must be in [0, 1), got {self.warmup_fraction}")

    def lr(self, depth: int) -> float:
        # The paper's linear scaling with batch, referenced to 256 (the trainer's peak_lr rule).
        return self.base_lr.at(depth) * self.batch_size.at(depth) / 256


@dataclass(frozen=True)
class ResourceSpec:
    cpus: DepthRule  # CPUs per trial (fractions pack small trials together)
    gpus: DepthRule  # GPUs per trial; > 1 runs data-parallel (see orchestration/distributed.py)
    custom: dict[str, DepthRule] = field(default_factory=dict)  # Ray custom resources per trial
    device: str = "auto"  # auto: cuda when the trial holds a GPU, else cpu
    max_retries: int = 2  # retries after a worker or node died (divergence is never retried)
    # Achieved training FLOP/s for dry-run time estimates; measure with `varscale bench` on the
    # target hardware. Stated defaults: an H100 at ~40% of its 989 TFLOP/s bf16 peak; one CPU
    # thread as measured here (`varscale bench --depth 2 --batch 4 --threads 1`: 3.3e10).
    flops_per_second: float = 4.0e14  # per GPU
    cpu_flops_per_second: float = 3.0e10  # per CPU thread, for trials without a GPU


@dataclass(frozen=True)
class StudySpec:
    name: str
    storage: str  # absolute folder: token cache, checkpoints, resolved spec, default MLflow store
    tracking_uri: str  # MLflow: sqlite:///<storage>/mlflow.db by default, http://... on a cluster
    data: DataConfig  # var_model.data.DataConfig, its fields written as they are
    tokenizer: TokenizerSpec
    model: ModelSpec
    budgets: BudgetSpec
    seeds: tuple[int, ...]
    recipe: RecipeSpec
    # Further var_model.training.TrialConfig fields for every trial (eval_every, checkpoint_every,
    # log_every, sample_grid, precision, divergence_loss, ...), validated by TrialConfig itself.
    trial_settings: dict
    resources: ResourceSpec
    source: dict = field(default_factory=dict, compare=False)  # the resolved YAML mapping

    def __post_init__(self):
        if not STUDY_NAME_PATTERN.match(self.name):
            raise ConfigError(
                f"name: {self.name!r} is not allowed; use letters, digits, '_', '.', '-' "
                "(it names the MLflow experiment and folders)"
            )
        if not self.seeds:
            raise ConfigError("seeds: must list at least one seed, got []")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: seeds must be distinct, got {list(self.seeds)}")


def load_study(path: str, overrides: list[str] | None = None, base_directory: str | None = None) -> StudySpec:
    """Read, override (`key.sub=value`), parse and validate a study file."""
    from orchestration.spec_parser import parse_study, read_study_yaml
    from orchestration.overrides import apply_overrides

    mapping = apply_overrides(read_study_yaml(path), overrides or [])
    return parse_study(mapping, base_directory=base_directory)
