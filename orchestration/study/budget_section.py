"""The `budgets:` section of a study file: the training compute of each trial."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag

from orchestration.study.branches import STRATEGIES
from orchestration.study.fields import BY_DEPTH_TAG, ONE_VALUE_TAG, PositiveInteger, PositiveNumber, choice
from orchestration.study.section import Section
from var_model.training.budget import BUDGET_KINDS

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
