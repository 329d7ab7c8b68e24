"""The study specification: frozen pydantic models, one per section of a study file.

    spec = load_study("studies/smoke.yaml", overrides=["model.depths=[2,3]"])  # orchestration.study.loading

`StudySpec` is the whole file: its top-level keys, one field per section, and the checks that
span sections. Each section is a model of its own module (`*_section.py`), re-exported here.
Each default is written once; where a field is also a TrialConfig field, its default is read
from TrialConfig (or TokenizerStageConfig) instead. Every key is described in docs/STUDIES.md.
Validation is pure: it reads the file's values and the tokenizer's geometry and never expands
trials (that is `orchestration.study.trials`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator, model_validator

from orchestration.study.branches import strategy_problems
from orchestration.study.budget_section import BudgetSpec
from orchestration.study.data_section import DataSection
from orchestration.study.evaluation_section import EvaluationSpec
from orchestration.study.fields import Mapping, NonNegativeInteger, Text, distinct, field_error
from orchestration.study.geometry import vqvae_config
from orchestration.study.model_section import STUDY_SET_MODEL_FIELDS, ModelSpec, var_config
from orchestration.study.recipe_section import STUDY_SET_TRIAL_FIELDS, RecipeSpec
from orchestration.study.resource_section import DEVICES, ResourceSpec
from orchestration.study.section import TOKENIZER_STAGE_DEFAULTS, TRIAL_DEFAULTS, Section, from_base_directory
from orchestration.study.tokenizer_section import TokenizerSpec
from var_model.errors import ConfigError
from var_model.training.config import TrialConfig

# The names other modules import from here (the sections lived in this file before).
__all__ = [
    "DEVICES",
    "STUDY_NAME_PATTERN",
    "STUDY_SET_MODEL_FIELDS",
    "STUDY_SET_TRIAL_FIELDS",
    "TOKENIZER_STAGE_DEFAULTS",
    "TRIAL_DEFAULTS",
    "BudgetSpec",
    "DataSection",
    "ModelSpec",
    "RecipeSpec",
    "ResourceSpec",
    "Section",
    "StudySpec",
    "TokenizerSpec",
]

STUDY_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
    evaluation: EvaluationSpec | None = None  # sample quality per trial (evaluation_section.py); absent: off

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
        return from_base_directory(storage or f"runs/{info.data['name']}", info)

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
        model = model.model_copy(
            update={
                "patch_nums": model.patch_nums or tuple(geometry.patch_nums),
                "num_classes": model.num_classes or data.num_classes,
            }
        )
        for index, depth in enumerate(model.depths):
            try:
                var_config(model, geometry, depth)
            except ConfigError as error:
                # var_model names the VARConfig field (`drop_path_rate=...`): one the user wrote in
                # model.overrides, or one VARConfig derives from the depth, whose entry is then named
                field = str(error).partition("=")[0]
                if field in model.overrides:
                    raise field_error(str(error), suffix=f".overrides.{field}") from None
                raise field_error(
                    f"depth {depth} gives an invalid model: {error} (VARConfig derives the fields that "
                    "model.overrides does not set from the depth)",
                    suffix=f".depths[{index}]",
                ) from None
        return model

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
        for path, rule in {**self.recipe.rules(), **self.resources.rules()}.items():
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
            per_node = self.resources.gpus_per_node
            if per_node and gpus > per_node and gpus % per_node:
                problems.append(
                    f"resources.gpus: {gpus:g} GPUs at depth {depth} span nodes of resources.gpus_per_node "
                    f"{per_node} but do not divide into them; use a multiple of {per_node} (every node holds "
                    f"the same share), or at most {per_node} on one node"
                )
        # fork points that collide need the trials' steps: study.branches checks them at plan time
        problems += strategy_problems(self.budgets.strategy, self.recipe.schedule, self.recipe.decay_fraction)
        if problems:
            raise field_error("\n".join(problems), path="")
        return self
