"""A compute budget -> a number of optimiser steps, and the counters logged at each step.

A scaling study fixes the budget C, not the step count: steps = floor(C / cost of one
step), where one step costs `batch_size` images, `batch_size * L` tokens, or
`batch_size * flops_per_image` FLOPs (the model's exact training count, forward + backward,
from `VAR.flops_per_image(training=True)`). Flooring means a trial never spends more than
its budget; the counters it logs say exactly what it did spend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from var_model.errors import ConfigError

BUDGET_KINDS = ("flops", "images", "tokens")


@dataclass(frozen=True)
class StepCost:
    """What one optimiser step consumes."""

    images: int
    tokens: int
    flops: int

    @classmethod
    def for_batch(cls, batch_size: int, tokens_per_image: int, flops_per_image: int) -> "StepCost":
        return cls(
            images=batch_size,
            tokens=batch_size * tokens_per_image,
            flops=batch_size * flops_per_image,
        )

    def counters(self, steps: int) -> dict[str, float]:
        """The `images`, `tokens` and `flops` counters after `steps` steps (floats, because
        metric dicts are floats; exact up to 2**53, i.e. 9e15, beyond which FLOPs are
        rounded to about one part in 1e16)."""
        return {
            "images": float(self.images * steps),
            "tokens": float(self.tokens * steps),
            "flops": float(self.flops * steps),
        }


def steps_for_budget(kind: str, value: float, cost: StepCost) -> int:
    """The number of whole steps that fit in the budget; a clear error when none does."""
    if kind not in BUDGET_KINDS:
        raise ConfigError(f"budget_kind is {kind!r}; allowed: {', '.join(BUDGET_KINDS)}")
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"budget_value is {value!r}; it must be a positive finite number")
    per_step = {"flops": cost.flops, "images": cost.images, "tokens": cost.tokens}[kind]
    steps = int(value // per_step)
    if steps < 1:
        raise ConfigError(
            f"budget of {value:.4g} {kind} is smaller than one step ({per_step:.4g} {kind} = "
            f"batch of {cost.images} images); raise budget_value or lower batch_size"
        )
    return steps
