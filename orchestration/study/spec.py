"""The study specification: frozen pydantic models, one per section of a study file.

    spec = load_study("studies/smoke.yaml", overrides=["model.depths=[2,3]"])  # orchestration.study.loading

Each default is written once, here; where a field is also a TrialConfig field, its default is
read from TrialConfig (or TokenizerStageConfig) instead. Every key is described in
docs/STUDIES.md. Validation is pure: it reads the file's values and the tokenizer's geometry
and never expands trials (that is `orchestration.study.trials`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orchestration.study.branches import STRATEGIES, strategy_problems
from orchestration.study.depth_rule import DepthRule, depth_rule
from orchestration.study.fields import (
    BY_DEPTH_TAG,
    ONE_VALUE_TAG,
    Mapping,
    NonNegativeInteger,
    NonNegativeNumber,
    PositiveInteger,
    PositiveNumber,
    Text,
    boolean_or,
    choice,
    describe,
    distinct,
    expect_mapping,
    field_error,
    mapping_of,
    positive_integer_or,
)
from orchestration.study.geometry import TOKENIZER_PRESETS, vqvae_config
from var_model.data.config import DataConfig
from var_model.errors import ConfigError
from var_model.memory.execution import AUTO
from var_model.tokenizer.stage import TOKENIZER_KINDS, TokenizerStageConfig
from var_model.tokenizer.training import TokenizerTrainingConfig
from var_model.training.budget import BUDGET_KINDS
from var_model.training.config import ACTIVATION_CHECKPOINTING, ATTENTION_CHOICES, SHARDINGS, TrialConfig
from var_model.training.schedules import DECAY_SHAPES, SCHEDULES

STUDY_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DEVICES = ("auto", "cpu", "cuda")
# VARConfig fields the study derives (depths, the width rule, the tokenizer, the data).
STUDY_SET_MODEL_FIELDS = frozenset(
    {"depth", "width", "num_heads", "codebook_size", "latent_channels", "patch_nums", "num_classes"}
)


def _defaults(config_class: type) -> dict[str, Any]:
    return {
        item.name: item.default for item in dataclasses.fields(config_class) if item.default is not dataclasses.MISSING
    }


TRIAL_DEFAULTS = _defaults(TrialConfig)
TOKENIZER_STAGE_DEFAULTS = _defaults(TokenizerStageConfig)


class Section(BaseModel):
    """A section of a study file: frozen, an unknown key is an error, and defaults are validated
    like written values (so a rule's default is written as a plain value)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, values: Any) -> Any:
        # `key:` with no value (YAML null) means the key is not given: its default, or "required".
        return (
            {key: value for key, value in values.items() if value is not None} if isinstance(values, dict) else values
        )


def _data_config(value: Any) -> DataConfig:
    # The data section is var_model's DataConfig written out; its own validation names the
    # field as data.<name>.
    if isinstance(value, DataConfig):
        return value
    if not isinstance(value, dict):
        raise field_error(f"expected a mapping, got {describe(value)}")
    try:
        return DataConfig.from_dict(value)
    except TypeError as error:
        raise ConfigError(f"data: {error}") from None


DataSection = Annotated[DataConfig, PlainValidator(_data_config), PlainSerializer(DataConfig.to_dict)]


class TokenizerSpec(Section):
    kind: choice(TOKENIZER_KINDS)
    # Which VQVAEConfig to start from: debug (tiny, CPU) or official (VAR's); official weights
    # need the official architecture, so load_official defaults to it.
    preset: choice(TOKENIZER_PRESETS) = None
    overrides: mapping_of("of VQVAEConfig fields") = Field(default_factory=dict)  # changed from the preset
    training: mapping_of("of training fields") = Field(default_factory=dict)  # TokenizerTrainingConfig fields
    vqvae_path: Text | None = None  # kind load_official: the released vae_ch160v4096z32.pth
    encode_batch_size: PositiveInteger = TOKENIZER_STAGE_DEFAULTS["encode_batch_size"]

    @model_validator(mode="before")
    @classmethod
    def _preset_follows_kind(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("preset") is None:
            return {**values, "preset": "official" if values.get("kind") == "load_official" else "debug"}
        return values

    @field_validator("training")
    @classmethod
    def _training_fields(cls, training: dict) -> dict:
        known = sorted(item.name for item in dataclasses.fields(TokenizerTrainingConfig))
        unknown = sorted(set(training) - set(known))
        if unknown:
            raise field_error(f"unknown key (allowed keys: {', '.join(known)})", suffix=f".{unknown[0]}")
        try:
            TokenizerTrainingConfig(**training)
        except ConfigError as error:
            raise field_error(str(error)) from None
        return training

    @model_validator(mode="after")
    def _official_weights(self) -> "TokenizerSpec":
        if self.kind == "load_official" and not self.vqvae_path:
            raise field_error("required when tokenizer.kind is load_official", path="tokenizer.vqvae_path")
        if self.kind == "load_official" and self.preset != "official":
            raise field_error(
                f"official weights need the official architecture, got {self.preset!r}", path="tokenizer.preset"
            )
        return self


class ModelSpec(Section):
    depths: Annotated[tuple[PositiveInteger, ...], Field(min_length=1), distinct("depths")]
    # VAR: width C = 64 * depth and head dim 64 (the paper, section 4; docs/MODEL.md).
    width_per_depth: PositiveInteger = 64
    head_dim: PositiveInteger = 64
    patch_nums: Annotated[tuple[PositiveInteger, ...], Field(min_length=1)] | None = None  # None: the preset's
    num_classes: PositiveInteger | None = None  # classes the VAR conditions on; None: data.num_classes
    overrides: mapping_of("of VARConfig fields") = Field(default_factory=dict)  # extra VARConfig fields

    @field_validator("patch_nums")
    @classmethod
    def _increasing(cls, patch_nums: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if patch_nums is not None and list(patch_nums) != sorted(set(patch_nums)):
            raise field_error(f"must be strictly increasing, got {list(patch_nums)}")
        return patch_nums

    @field_validator("overrides")
    @classmethod
    def _not_derived(cls, overrides: dict) -> dict:
        clash = sorted(STUDY_SET_MODEL_FIELDS & set(overrides))
        if clash:
            raise field_error(f"{clash} are set by the study (depths, width rule, tokenizer); remove them")
        return overrides

    @model_validator(mode="after")
    def _whole_heads(self) -> "ModelSpec":
        if self.width_per_depth % self.head_dim:
            raise field_error(
                f"{self.width_per_depth} must be a multiple of model.head_dim ({self.head_dim}) so every "
                "width splits into whole heads",
                path="model.width_per_depth",
            )
        return self


Budgets = Annotated[tuple[PositiveNumber, ...], Field(min_length=1)]


def _budget_form(value: Any) -> str:
    return BY_DEPTH_TAG if isinstance(value, dict) else ONE_VALUE_TAG


class BudgetSpec(Section):
    kind: choice(BUDGET_KINDS)  # training compute per trial
    # independent: each budget from step 0; branches: one trunk per (depth, seed), a cooldown per budget
    strategy: choice(STRATEGIES) = STRATEGIES[0]
    # A list: the same budgets for every depth; a mapping {depth: budgets}: budgets per depth.
    values: Annotated[
        Annotated[Budgets, Tag(ONE_VALUE_TAG)] | Annotated[dict[PositiveInteger, Budgets], Tag(BY_DEPTH_TAG)],
        Discriminator(_budget_form),
    ]

    def for_depth(self, depth: int) -> tuple[float, ...]:
        return self.values[depth] if isinstance(self.values, dict) else self.values


class RecipeSpec(Section):
    """Training hyper-parameters as rules of depth (the paper's recipe: docs/STUDIES.md).

    Every field is the TrialConfig field of the same name, resolved at the trial's depth: a new
    recipe setting is one field here, with its default read from TrialConfig. The execution
    fields (micro-batch to attention) change memory and speed, never the update; their `auto`
    is resolved per trial at plan time (orchestration.study.execution_plan).
    """

    batch_size: depth_rule(PositiveInteger)
    base_lr: depth_rule(PositiveNumber)  # lr = base_lr * batch / 256 (the paper's tblr)
    warmup_fraction: NonNegativeNumber = TRIAL_DEFAULTS["warmup_fraction"]
    schedule: choice(SCHEDULES) = TRIAL_DEFAULTS["schedule"]
    # wsd: the cooldown's share of a trial's steps and its shape (a branch forks at (1 - it) x steps)
    decay_fraction: NonNegativeNumber = TRIAL_DEFAULTS["decay_fraction"]
    decay_shape: choice(DECAY_SHAPES) = TRIAL_DEFAULTS["decay_shape"]
    # None: warmup_fraction of each trial's steps (under branches, of the smallest budget's)
    warmup_steps: NonNegativeInteger | None = TRIAL_DEFAULTS["warmup_steps"]
    final_lr_fraction: depth_rule(NonNegativeNumber) = TRIAL_DEFAULTS["final_lr_fraction"]
    weight_decay: NonNegativeNumber = TRIAL_DEFAULTS["weight_decay"]
    grad_clip: PositiveNumber = TRIAL_DEFAULTS["grad_clip"]
    # auto: on a GPU, what var_model.memory.choose_execution picks to fit resources.gpu_memory_gb
    # (largest micro-batch, then checkpointing, then sharding); on a CPU, the whole batch, none, ddp.
    micro_batch_size: depth_rule(positive_integer_or(AUTO)) = AUTO  # images per device per pass
    activation_checkpointing: depth_rule(choice((AUTO, *ACTIVATION_CHECKPOINTING))) = AUTO
    sharding: depth_rule(choice((AUTO, *SHARDINGS))) = AUTO
    compile: boolean_or(AUTO) = TRIAL_DEFAULTS["compile"]  # auto: on for CUDA
    attention: choice(ATTENTION_CHOICES) = TRIAL_DEFAULTS["attention"]  # auto: the device's faster kernel

    @field_validator("warmup_fraction")
    @classmethod
    def _below_one(cls, fraction: float) -> float:
        if not fraction < 1:
            raise field_error(f"must be in [0, 1), got {fraction}")
        return fraction

    @field_validator("decay_fraction")
    @classmethod
    def _at_most_one(cls, fraction: float) -> float:
        if not fraction <= 1:
            raise field_error(f"must be in [0, 1], got {fraction}")
        return fraction

    def trial_values(self, depth: int) -> dict[str, Any]:
        """The recipe at `depth`, as TrialConfig fields."""
        return {name: _at(getattr(self, name), depth) for name in type(self).model_fields}

    def lr(self, depth: int) -> float:
        # The paper's linear scaling with batch, referenced to 256 (the trainer's peak_lr rule).
        return self.base_lr.at(depth) * self.batch_size.at(depth) / 256


def _from_base_directory(path: str, info: ValidationInfo) -> str:
    base_directory = (info.context or {}).get("base_directory") or os.getcwd()
    return os.path.abspath(os.path.join(base_directory, os.path.expanduser(path)))


def _at(value: Any, depth: int) -> Any:
    return value.at(depth) if isinstance(value, DepthRule) else value


# TrialConfig fields the study decides per trial: the recipe's, and these; the `trial:` section
# may set the others.
STUDY_SET_TRIAL_FIELDS = frozenset(RecipeSpec.model_fields) | {
    "token_cache",
    "output_dir",
    "model",
    "budget_kind",
    "budget_value",
    "seed",
    "device",
    "threads",
    # a trunk's and a branch's: set per trial under budgets.strategy branches
    "fork_budgets",
    "fork_path",
    "fork_sha256",
    "fork_step",
}


CustomResources = Annotated[dict[str, depth_rule(NonNegativeNumber)], expect_mapping("{resource name: amount}")]


class ResourceSpec(Section):
    cpus: depth_rule(PositiveNumber) = 1.0  # per trial (fractions pack trials)
    gpus: depth_rule(NonNegativeNumber) = 0.0  # per trial; > 1 runs data-parallel
    custom: CustomResources = Field(default_factory=dict)  # Ray custom resources per trial
    device: choice(DEVICES) = "auto"  # auto: cuda when the trial holds a GPU, else cpu
    max_retries: NonNegativeInteger = 2  # retries after a worker or node died (never a divergence)
    # Achieved training FLOP/s for dry-run time estimates; measure with `varscale bench` on the
    # target hardware. Stated defaults: an H100 at ~40% of its 989 TFLOP/s bf16 peak; one CPU
    # thread as measured here (`varscale bench --depth 2 --batch 4 --threads 1`: 3.3e10).
    flops_per_second: PositiveNumber = 4.0e14  # per GPU
    cpu_flops_per_second: PositiveNumber = 3.0e10  # per CPU thread, for trials without a GPU
    # Measured FLOP/s (`varscale bench --save FILE`) for the GPU trials' estimates instead of
    # flops_per_second, looked up as device_name (None: the file's only device).
    throughput_file: Text | None = None
    device_name: Text | None = None
    gpu_memory_gb: PositiveNumber = 80.0  # of one GPU (1 GB = 1e9 bytes); every GPU trial's plan must fit it

    @field_validator("throughput_file")
    @classmethod
    def _throughput_path(cls, path: str | None, info: ValidationInfo) -> str | None:
        return None if path is None else _from_base_directory(path, info)

    def rules(self) -> dict[str, DepthRule]:
        """Every per-depth rule of the section, by its path in the study file."""
        named = {
            f"resources.{name}": getattr(self, name)
            for name in type(self).model_fields
            if isinstance(getattr(self, name), DepthRule)
        }
        return {**named, **{f"resources.custom.{name}": rule for name, rule in self.custom.items()}}


class StudySpec(Section):
    name: Text
    # Absolute folder: token cache, checkpoints, resolved spec, default MLflow store; relative
    # paths are taken from the study's base directory (the working directory by default).
    storage: Text | None = Field(default=None, validate_default=True)
    # MLflow: sqlite:///<storage>/mlflow.db by default, http://... on a cluster.
    tracking_uri: Text | None = Field(default=None, validate_default=True)
    data: DataSection
    tokenizer: TokenizerSpec
    model: ModelSpec
    budgets: BudgetSpec
    seeds: Annotated[tuple[NonNegativeInteger, ...], Field(min_length=1), distinct("seeds")] = (0,)
    recipe: RecipeSpec
    # Further TrialConfig fields for every trial (eval_every, checkpoint_every, log_every,
    # sample_grid, precision, divergence_loss, ...); their values are checked by TrialConfig.
    trial: Mapping = Field(default_factory=dict)
    resources: ResourceSpec = Field(default_factory=ResourceSpec)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not STUDY_NAME_PATTERN.match(name):
            raise field_error(
                f"{name!r} is not allowed; use letters, digits, '_', '.', '-' "
                "(it names the MLflow experiment and folders)"
            )
        return name

    @field_validator("storage")
    @classmethod
    def _storage(cls, storage: str | None, info: ValidationInfo) -> str | None:
        if "name" not in info.data:
            return storage  # the name's own error is reported
        return _from_base_directory(storage or f"runs/{info.data['name']}", info)

    @field_validator("tracking_uri")
    @classmethod
    def _tracking_uri(cls, tracking_uri: str | None, info: ValidationInfo) -> str | None:
        # An absolute SQLite path: Ray workers run in other working directories (docs/CLUSTER.md).
        if tracking_uri is None and info.data.get("storage"):
            return f"sqlite:///{os.path.join(info.data['storage'], 'mlflow.db')}"
        return tracking_uri

    @field_validator("model")
    @classmethod
    def _model_geometry(cls, model: ModelSpec, info: ValidationInfo) -> ModelSpec:
        data, tokenizer = info.data.get("data"), info.data.get("tokenizer")
        if data is None or tokenizer is None:
            return model  # their own errors are reported
        geometry = vqvae_config(tokenizer.preset, tokenizer.overrides, data.resolution, model.patch_nums)
        # The preset's scales and the data's classes, recorded so that the spec is complete.
        return model.model_copy(
            update={
                "patch_nums": model.patch_nums or tuple(geometry.patch_nums),
                "num_classes": model.num_classes or data.num_classes,
            }
        )

    @field_validator("trial")
    @classmethod
    def _trial_fields(cls, settings: dict) -> dict:
        allowed = sorted({item.name for item in dataclasses.fields(TrialConfig)} - STUDY_SET_TRIAL_FIELDS)
        for key in settings:
            if key in STUDY_SET_TRIAL_FIELDS:
                raise field_error(
                    "set by the study (model, budgets, recipe, resources); remove it here", suffix=f".{key}"
                )
            if key not in allowed:
                raise field_error(
                    f"unknown key {key!r} in trial (allowed keys: {', '.join(allowed)})", suffix=f".{key}"
                )
        return settings

    @model_validator(mode="after")
    def _every_depth_is_covered(self) -> "StudySpec":
        problems = []
        if isinstance(self.budgets.values, dict):
            missing = sorted(set(self.model.depths) - set(self.budgets.values))
            if missing:
                problems.append(f"budgets.values: no budgets for depth(s) {missing} of model.depths")
        rules = {
            f"recipe.{name}": getattr(self.recipe, name)
            for name in type(self.recipe).model_fields
            if isinstance(getattr(self.recipe, name), DepthRule)
        }
        for path, rule in {**rules, **self.resources.rules()}.items():
            uncovered = [depth for depth in sorted(self.model.depths) if not rule.covers(depth)]
            if uncovered:
                problems.append(
                    f"{path}: no value for depth {uncovered[0]}; the mapping starts at depth "
                    f"{rule.first_depth()} (add a key <= {uncovered[0]})"
                )
        for depth in sorted(self.model.depths):
            # Ray allows fractions of one GPU (packing small trials) but only whole numbers above one.
            gpus = self.resources.gpus.at(depth) if self.resources.gpus.covers(depth) else 0
            if gpus > 1 and gpus != int(gpus):
                problems.append(
                    f"resources.gpus: {gpus:g} GPUs at depth {depth}; above 1 use a whole "
                    "number (the trial runs data-parallel on them), below 1 any fraction"
                )
        # fork points that collide need the trials' steps: study.branches checks them at plan time
        problems += strategy_problems(self.budgets.strategy, self.recipe.schedule, self.recipe.decay_fraction)
        if problems:
            raise field_error("\n".join(problems), path="")
        return self
