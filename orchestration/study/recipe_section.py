"""The `recipe:` section of a study file: training hyper-parameters as rules of depth."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from orchestration.study.depth_rule import DepthRule, depth_rule
from orchestration.study.fields import (
    NonNegativeInteger,
    NonNegativeNumber,
    PositiveInteger,
    PositiveNumber,
    boolean_or,
    choice,
    field_error,
    positive_integer_or,
)
from orchestration.study.section import TRIAL_DEFAULTS, Section
from var_model.memory.execution import AUTO
from var_model.training.config_choices import ACTIVATION_CHECKPOINTING, ATTENTION_CHOICES, SHARDINGS
from var_model.training.schedules import DECAY_SHAPES, SCHEDULES


def _at(value: Any, depth: int) -> Any:
    return value.at(depth) if isinstance(value, DepthRule) else value


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

    def rules(self) -> dict[str, DepthRule]:
        """Every per-depth rule of the section, by its path in the study file."""
        return {
            f"recipe.{name}": getattr(self, name)
            for name in type(self).model_fields
            if isinstance(getattr(self, name), DepthRule)
        }

    def lr(self, depth: int) -> float:
        # The paper's linear scaling with batch, referenced to 256 (the trainer's peak_lr rule).
        return self.base_lr.at(depth) * self.batch_size.at(depth) / 256


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
    "evaluation",  # the study's evaluation: section (evaluation_section.py)
}
