"""A value that may change with model depth: one number, or a step function of depth.

In a study file a rule is written either as a plain number (`base_lr: 1.0e-4`) or as a
mapping from a starting depth to the value that holds from that depth upward:

    base_lr: {6: 1.0e-4, 24: 8.0e-5}   # d6..d23 use 1e-4, d24 and deeper use 8e-5

This is how the VAR recipe is published (one lr for d16/d20, another for d24/d30), so the
file can say it without code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from var_model.errors import ConfigError

from orchestration.yaml_fields import as_int, describe


@dataclass(frozen=True)
class DepthRule:
    """`steps` holds (start_depth, value) pairs sorted by depth; a constant has start depth 0."""

    path: str
    steps: tuple[tuple[int, Any], ...]

    def __post_init__(self):
        if not self.steps:
            raise ConfigError(f"{self.path}: a per-depth mapping must not be empty")
        depths = [depth for depth, _ in self.steps]
        if depths != sorted(set(depths)):
            raise ConfigError(f"{self.path}: depths must be distinct and sorted, got {depths}")

    @classmethod
    def parse(cls, value: Any, path: str, convert: Callable[[Any, str], Any]) -> "DepthRule":
        if isinstance(value, dict):
            steps = []
            for depth, item in value.items():
                depth_int = as_int(depth, f"{path} (key {describe(depth)})", minimum=1)
                steps.append((depth_int, convert(item, f"{path}[{depth_int}]")))
            return cls(path, tuple(sorted(steps)))
        return cls(path, ((0, convert(value, path)),))

    @classmethod
    def constant(cls, value: Any, path: str) -> "DepthRule":
        return cls(path, ((0, value),))

    def at(self, depth: int) -> Any:
        chosen = None
        for start_depth, value in self.steps:
            if depth >= start_depth:
                chosen = value
        if chosen is None:
            raise ConfigError(
                f"{self.path}: no value for depth {depth}; the mapping starts at depth "
                f"{self.steps[0][0]} (add a key <= {depth})"
            )
        return chosen

    def to_yaml(self) -> Any:
        if len(self.steps) == 1 and self.steps[0][0] == 0:
            return self.steps[0][1]
        return {depth: value for depth, value in self.steps}
