"""A value that may change with model depth: one number, or a step function of depth.

In a study file a rule is written either as a plain number (`base_lr: 1.0e-4`) or as a
mapping from a starting depth to the value that holds from that depth upward:

    base_lr: {6: 1.0e-4, 24: 8.0e-5}   # d6..d23 use 1e-4, d24 and deeper use 8e-5

This is how the VAR recipe is published (one lr for d16/d20, another for d24/d30), so the
file can say it without code. `depth_rule(ValueType)` is the pydantic field type of a rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import AfterValidator, Discriminator, PlainSerializer, Tag

from orchestration.study.fields import BY_DEPTH_TAG, ONE_VALUE_TAG, PositiveInteger, field_error

# A constant rule holds from this start depth, below every real depth (which start at 1).
EVERY_DEPTH = 0


@dataclass(frozen=True)
class DepthRule:
    """`steps` holds (start_depth, value) pairs sorted by depth; a constant starts at depth 0."""

    steps: tuple[tuple[int, Any], ...]

    @classmethod
    def constant(cls, value: Any) -> "DepthRule":
        return cls(((EVERY_DEPTH, value),))

    def first_depth(self) -> int:
        return self.steps[0][0]

    def covers(self, depth: int) -> bool:
        return depth >= self.first_depth()

    def at(self, depth: int) -> Any:
        """The value at `depth`; the study spec has checked that the rule covers its depths."""
        chosen = None
        for start_depth, value in self.steps:
            if depth >= start_depth:
                chosen = value
        if chosen is None:
            raise ValueError(f"no value for depth {depth}; the mapping starts at depth {self.first_depth()}")
        return chosen

    def values(self) -> tuple[Any, ...]:
        return tuple(value for _, value in self.steps)

    def to_yaml(self) -> Any:
        """The rule as it is written in a study file (the inverse of validation)."""
        if len(self.steps) == 1 and self.steps[0][0] == EVERY_DEPTH:
            return self.steps[0][1]
        return {depth: value for depth, value in self.steps}


def _form(value: Any) -> str:
    if isinstance(value, DepthRule):
        return "rule"
    return BY_DEPTH_TAG if isinstance(value, dict) else ONE_VALUE_TAG


def _to_rule(value: Any) -> DepthRule:
    if isinstance(value, DepthRule):
        return value
    if isinstance(value, dict):
        if not value:
            raise field_error("a per-depth mapping must not be empty")
        return DepthRule(tuple(sorted(value.items())))
    return DepthRule.constant(value)


def depth_rule(value_type: Any):
    """The field type of a rule whose values have `value_type`; it dumps back to its YAML form."""
    written = Union[
        Annotated[value_type, Tag(ONE_VALUE_TAG)],
        Annotated[dict[PositiveInteger, value_type], Tag(BY_DEPTH_TAG)],
        Annotated[DepthRule, Tag("rule")],
    ]
    return Annotated[written, Discriminator(_form), AfterValidator(_to_rule), PlainSerializer(DepthRule.to_yaml)]
