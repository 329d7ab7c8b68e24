"""YAML -> StudySpec: the strict parser behind `load_study`.

Only `yaml.safe_load` is used (no object construction from tags). Each section is read with a
`Section`, which refuses unknown keys; cross-field checks that need the tokenizer's geometry
(patch_nums ending at the latent side) are done here, where both sections are known.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from var_model.config import VQVAEConfig
from var_model.data.config import DataConfig
from var_model.errors import ConfigError

from orchestration.depth_rule import DepthRule
from orchestration.study_spec import (
    BUDGET_KINDS, DEVICES, SCHEDULES, TOKENIZER_KINDS, TOKENIZER_PRESETS, BudgetSpec,
    ModelSpec, RecipeSpec, ResourceSpec, StudySpec, TokenizerSpec,
)
from orchestration.yaml_fields import Section, as_float, as_int, as_list, describe

# TrialConfig fields the study decides per trial; the `trial:` section may set the others.
STUDY_SET_TRIAL_FIELDS = {
    "token_cache", "output_dir", "model", "budget_kind", "budget_value", "batch_size", "base_lr",
    "schedule", "warmup_fraction", "final_lr_fraction", "weight_decay", "grad_clip", "seed",
    "device", "threads",
}


def read_study_yaml(path: str) -> dict:
    file_path = Path(path)
    if not file_path.is_file():
        raise ConfigError(f"study file {path!r} does not exist (give a path such as studies/smoke.yaml)")
    try:
        mapping = yaml.safe_load(file_path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"study file {path!r} is not valid YAML: {error}") from None
    if not isinstance(mapping, dict):
        raise ConfigError(f"study file {path!r}: expected a mapping at the top level, got {describe(mapping)}")
    return mapping


def _data(section: Section) -> DataConfig:
    # The data section is var_model's DataConfig written out; its own validation names the
    # field as data.<name>. Types are checked first so that its messages stay simple.
    values = dict(section.mapping)
    try:
        return DataConfig.from_dict(values)
    except TypeError as error:
        raise ConfigError(f"data: {error}") from None


def _tokenizer(section: Section) -> TokenizerSpec:
    from var_model.tokenizer.training import TokenizerTrainingConfig

    kind = section.string("kind", required=True, choices=TOKENIZER_KINDS)
    preset = section.string("preset", "official" if kind == "load_official" else "debug", choices=TOKENIZER_PRESETS)
    overrides = section.raw("overrides", {})
    if not isinstance(overrides, dict):
        raise ConfigError(f"tokenizer.overrides: expected a mapping of VQVAEConfig fields, got {describe(overrides)}")
    training = section.raw("training", {})
    if not isinstance(training, dict):
        raise ConfigError(f"tokenizer.training: expected a mapping of training fields, got {describe(training)}")
    known = sorted(item.name for item in dataclasses.fields(TokenizerTrainingConfig))
    unknown = sorted(set(training) - set(known))
    if unknown:
        raise ConfigError(f"tokenizer.training.{unknown[0]}: unknown key (allowed keys: {', '.join(known)})")
    try:
        TokenizerTrainingConfig(**training)
    except ConfigError as error:
        raise ConfigError(f"tokenizer.training: {error}") from None
    spec = TokenizerSpec(
        kind=kind, preset=preset, overrides=overrides, training=training,
        vqvae_path=section.string("vqvae_path"),
        encode_batch_size=section.integer("encode_batch_size", 128, minimum=1),
    )
    section.finish()
    return spec


def vqvae_config(tokenizer: TokenizerSpec, resolution: int, patch_nums: tuple[int, ...] | None) -> VQVAEConfig:
    """The tokenizer architecture: the preset, its overrides, the data resolution and scales."""
    base = VQVAEConfig.debug() if tokenizer.preset == "debug" else VQVAEConfig()
    values = base.to_dict()
    unknown = sorted(set(tokenizer.overrides) - set(values))
    if unknown:
        raise ConfigError(f"tokenizer.overrides: unknown VQVAEConfig field(s) {unknown}; allowed: {sorted(values)}")
    values.update(tokenizer.overrides)
    values["image_size"] = resolution
    downsample = 2 ** (len(values["channel_multipliers"]) - 1)
    latent_size = resolution // downsample
    if patch_nums is not None:
        if patch_nums[-1] != latent_size:
            raise ConfigError(
                f"model.patch_nums: {list(patch_nums)} must end at the latent side {latent_size} "
                f"(data.resolution {resolution} / tokenizer downsampling {downsample})"
            )
        values["patch_nums"] = list(patch_nums)
    elif values["patch_nums"][-1] != latent_size:
        raise ConfigError(
            f"model.patch_nums: not given, and the tokenizer preset's {values['patch_nums']} does not end "
            f"at the latent side {latent_size} (data.resolution {resolution}); set model.patch_nums"
        )
    return VQVAEConfig.from_dict(values)


def _model(section: Section, num_classes: int) -> tuple[ModelSpec, tuple[int, ...] | None]:
    depths = tuple(as_int(value, f"model.depths[{index}]", minimum=1)
                   for index, value in enumerate(as_list(section.raw("depths", required=True), "model.depths")))
    patch_nums_raw = section.raw("patch_nums")
    patch_nums = None
    if patch_nums_raw is not None:
        patch_nums = tuple(as_int(value, f"model.patch_nums[{index}]", minimum=1)
                           for index, value in enumerate(as_list(patch_nums_raw, "model.patch_nums")))
    overrides = section.raw("overrides", {})
    if not isinstance(overrides, dict):
        raise ConfigError(f"model.overrides: expected a mapping of VARConfig fields, got {describe(overrides)}")
    derived = {"depth", "width", "num_heads", "codebook_size", "latent_channels", "patch_nums", "num_classes"}
    clash = sorted(derived & set(overrides))
    if clash:
        raise ConfigError(f"model.overrides: {clash} are set by the study (depths, width rule, tokenizer); remove them")
    fields = dict(
        depths=depths,
        width_per_depth=section.integer("width_per_depth", 64, minimum=1),
        head_dim=section.integer("head_dim", 64, minimum=1),
        num_classes=section.integer("num_classes", num_classes, minimum=1),
        overrides=overrides,
    )
    if patch_nums is not None:
        fields["patch_nums"] = patch_nums
    section.finish()
    return ModelSpec(**fields), patch_nums


def _budgets(section: Section, depths: tuple[int, ...]) -> BudgetSpec:
    kind = section.string("kind", required=True, choices=BUDGET_KINDS)
    values = section.raw("values", required=True)
    section.finish()

    def budget_list(items: Any, path: str) -> tuple[float, ...]:
        return tuple(as_float(item, f"{path}[{index}]", positive=True)
                     for index, item in enumerate(as_list(items, path)))

    if isinstance(values, dict):
        per_depth = {}
        for depth, items in values.items():
            depth_int = as_int(depth, f"budgets.values (key {describe(depth)})", minimum=1)
            per_depth[depth_int] = budget_list(items, f"budgets.values[{depth_int}]")
        missing = sorted(set(depths) - set(per_depth))
        if missing:
            raise ConfigError(f"budgets.values: no budgets for depth(s) {missing} of model.depths")
        return BudgetSpec(kind=kind, per_depth=per_depth)
    return BudgetSpec(kind=kind, grid=budget_list(values, "budgets.values"))


def _positive_int(value: Any, path: str) -> int:
    return as_int(value, path, minimum=1)


def _fraction(value: Any, path: str) -> float:
    return as_float(value, path, minimum=0.0)


def _recipe(section: Section) -> RecipeSpec:
    def rule(key: str, convert, default=None, required=False) -> DepthRule | None:
        value = section.raw(key, default, required)
        return None if value is None else DepthRule.parse(value, f"recipe.{key}", convert)

    positive = lambda value, path: as_float(value, path, positive=True)  # noqa: E731
    spec = RecipeSpec(
        batch_size=rule("batch_size", _positive_int, required=True),
        base_lr=rule("base_lr", positive, required=True),
        warmup_fraction=section.number("warmup_fraction", 0.02, minimum=0.0),
        schedule=section.string("schedule", "paper", choices=SCHEDULES),
        final_lr_fraction=rule("final_lr_fraction", _fraction, 0.1),
        weight_decay=section.number("weight_decay", 0.05, minimum=0.0),
        grad_clip=section.number("grad_clip", 2.0, positive=True),
    )
    section.finish()
    return spec


def _resources(section: Section | None) -> ResourceSpec:
    section = section or Section({}, "resources")
    custom_raw = section.raw("custom", {})
    if not isinstance(custom_raw, dict):
        raise ConfigError(f"resources.custom: expected a mapping {{resource name: amount}}, got {describe(custom_raw)}")
    amount = lambda value, path: as_float(value, path, minimum=0.0)  # noqa: E731
    spec = ResourceSpec(
        cpus=DepthRule.parse(section.raw("cpus", 1), "resources.cpus", lambda v, p: as_float(v, p, positive=True)),
        gpus=DepthRule.parse(section.raw("gpus", 0), "resources.gpus", amount),
        custom={str(name): DepthRule.parse(value, f"resources.custom.{name}", amount)
                for name, value in custom_raw.items()},
        device=section.string("device", "auto", choices=DEVICES),
        max_retries=section.integer("max_retries", 2, minimum=0),
        flops_per_second=section.number("flops_per_second", 4.0e14, positive=True),
        cpu_flops_per_second=section.number("cpu_flops_per_second", 3.0e10, positive=True),
    )
    section.finish()
    return spec


def _trial_settings(section: Section | None) -> dict:
    from var_model.training.config import TrialConfig

    settings = dict(section.mapping) if section else {}
    allowed = sorted({item.name for item in dataclasses.fields(TrialConfig)} - STUDY_SET_TRIAL_FIELDS)
    for key in settings:
        if key in STUDY_SET_TRIAL_FIELDS:
            raise ConfigError(f"trial.{key}: set by the study (model, budgets, recipe, resources); remove it here")
        if key not in allowed:
            raise ConfigError(f"trial.{key}: unknown key {key!r} in trial (allowed keys: {', '.join(allowed)})")
    return settings


def parse_study(mapping: dict, base_directory: str | None = None) -> StudySpec:
    """Validate a study mapping (already overridden) into a StudySpec."""
    top = Section(mapping, "")
    name = top.string("name", required=True)
    storage = top.string("storage", f"runs/{name}")
    storage = os.path.abspath(os.path.join(base_directory or os.getcwd(), os.path.expanduser(storage)))
    # An absolute SQLite path: Ray workers run in other working directories (ORCHESTRATION_NOTES).
    tracking_uri = top.string("tracking_uri", f"sqlite:///{os.path.join(storage, 'mlflow.db')}")
    data = _data(top.section("data"))
    tokenizer = _tokenizer(top.section("tokenizer"))
    model, patch_nums = _model(top.section("model"), data.num_classes)
    geometry = vqvae_config(tokenizer, data.resolution, patch_nums)
    if patch_nums is None:  # the preset's scales, recorded so that the spec is complete
        model = dataclasses.replace(model, patch_nums=geometry.patch_nums)
    budgets = _budgets(top.section("budgets"), model.depths)
    seeds_raw = top.raw("seeds", [0])
    seeds = tuple(as_int(value, f"seeds[{index}]", minimum=0)
                  for index, value in enumerate(as_list(seeds_raw, "seeds")))
    spec = StudySpec(
        name=name, storage=storage, tracking_uri=tracking_uri, data=data, tokenizer=tokenizer,
        model=model, budgets=budgets, seeds=seeds,
        recipe=_recipe(top.section("recipe")),
        trial_settings=_trial_settings(top.section("trial", required=False)),
        resources=_resources(top.section("resources", required=False)),
        source={},
    )
    top.finish()
    # Validates every per-trial number (width/heads split, zero-step budgets, rules covering
    # every depth) before anything runs.
    from orchestration.trials import expand

    from orchestration.trial_config import build_trial_config

    for trial in expand(spec):
        build_trial_config(spec, trial)
    object.__setattr__(spec, "source", resolved_mapping(spec))
    return spec


def resolved_mapping(spec: StudySpec) -> dict:
    """The fully resolved study as plain YAML data (defaults filled in), saved with results."""
    from orchestration.resolved import spec_to_mapping

    return spec_to_mapping(spec)
