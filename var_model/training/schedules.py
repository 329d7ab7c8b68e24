"""Learning-rate schedules: a linear warm-up, then the paper's, cosine, or warm-up-stable-decay.

Each schedule is a pure function of (step, total steps), so a resumed trial needs no
scheduler state beyond the step; `LRSchedule.state_dict()` is still checkpointed so that a
resume with a different schedule is refused instead of silently mixing two.

- "paper" (VAR release, 'lin0'): after warm-up, hold the peak for the first 5% of the
  remaining steps (`flat_fraction`), then decay linearly to `final_lr_fraction` of the peak
  (the paper's wpe: 0.1 for d16/d20, 0.01 for d24/d30).
- "cosine": after warm-up, half a cosine from the peak to `final_lr_fraction` of it.
- "wsd" (warm-up, stable, decay; Hu et al. 2024 "MiniCPM"; Hägele et al. 2024, arXiv
  2405.18392): hold the peak, then decay to `final_lr_fraction` over the last `decay_fraction`
  of steps, in `decay_shape`: over the decay progress x in (0, 1] (x = 1 on the last step) the
  factor is final + (1 - final) * g(x), g = 1 - x ("linear"), 1 - sqrt(x) ("sqrt", the
  cooldown Hägele et al. find best), or (1 + cos(pi x)) / 2 ("cosine"). The decay starts at
  `fork_step(total_steps, decay_fraction)`: before it the schedule is warm-up then the peak,
  the same for every budget, which is what lets cooldown branches fork one constant-LR trunk
  (training/forks.py). That function is the one place the fork point is computed.
- "constant": the peak after warm-up (for debugging and for tests).

Warm-up is linear from `warmup_start_factor` x peak (the release: 0.005) to the peak over
`warmup_steps` steps (the paper: ep/50 epochs, i.e. 2% of training).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from var_model.errors import CheckpointError, ConfigError

SCHEDULES = ("paper", "cosine", "wsd", "constant")
DECAY_SHAPES = ("linear", "sqrt", "cosine")


def fork_step(total_steps: int, decay_fraction: float) -> int:
    """The step at which a wsd run of `total_steps` starts its decay: round((1 - f) x S).
    Steps 0 .. fork_step - 1 run at the warm-up/peak LR; a checkpoint after fork_step steps
    is the fork a cooldown branch of this budget starts from."""
    return round((1.0 - decay_fraction) * total_steps)


def fork_steps(steps_by_budget: dict[float, int], decay_fraction: float, warmup_steps: int) -> dict[float, int]:
    """The fork step of each budget (budget value -> its steps) of one trunk, checked: a
    decay_fraction in (0, 1), a fork after the warm-up and at least one decay step per budget,
    and no two budgets at one fork step (a ConfigError names the field to change)."""
    if not (isinstance(decay_fraction, (int, float)) and 0.0 < decay_fraction < 1.0):
        raise ConfigError(f"decay_fraction is {decay_fraction!r}; cooldown branches need it in (0, 1)")
    forks: dict[float, int] = {}
    for budget, steps in sorted(steps_by_budget.items()):
        step = fork_step(steps, decay_fraction)
        if step >= steps:
            raise ConfigError(
                f"budget {budget:g} ({steps} steps) with decay_fraction {decay_fraction} has no "
                "decay step; raise the budget or decay_fraction"
            )
        if step < max(warmup_steps, 1):
            raise ConfigError(
                f"budget {budget:g} ({steps} steps) forks at step {step}, before the end of the "
                f"warm-up (warmup_steps {warmup_steps}, and at least step 1); lower warmup_steps "
                "or decay_fraction, or raise the budget"
            )
        same = [other for other, other_step in forks.items() if other_step == step]
        if same:
            raise ConfigError(
                f"budgets {same[0]:g} and {budget:g} both fork at step {step} (decay_fraction "
                f"{decay_fraction}); fork_budgets must be far enough apart to fork at distinct "
                "steps: drop one of them"
            )
        forks[budget] = step
    return forks


@dataclass(frozen=True)
class LRSchedule:
    """Learning rate at each step: `peak_lr * factor(step)`; steps count from 0."""

    kind: str
    peak_lr: float
    total_steps: int
    warmup_steps: int
    warmup_start_factor: float = 0.005
    final_lr_fraction: float = 0.1
    flat_fraction: float = 0.05
    decay_fraction: float = 0.2
    decay_shape: str = "linear"

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ConfigError(f"schedule is {self.kind!r}; allowed: {', '.join(SCHEDULES)}")
        if not (self.peak_lr > 0 and math.isfinite(self.peak_lr)):
            raise ConfigError(f"peak learning rate is {self.peak_lr!r}; it must be positive")
        if self.total_steps < 1:
            raise ConfigError(f"total_steps is {self.total_steps}; it must be at least 1")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ConfigError(f"warmup_steps is {self.warmup_steps}; allowed 0..total_steps ({self.total_steps})")
        for name in ("warmup_start_factor", "final_lr_fraction", "flat_fraction", "decay_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} is {value!r}; allowed range [0, 1]")
        if self.decay_shape not in DECAY_SHAPES:
            raise ConfigError(f"decay_shape is {self.decay_shape!r}; allowed: {', '.join(DECAY_SHAPES)}")

    def factor(self, step: int) -> float:
        """Multiplier of the peak learning rate at `step` (0-based)."""
        if step < self.warmup_steps:
            progress = step / self.warmup_steps
            return self.warmup_start_factor + (1.0 - self.warmup_start_factor) * progress
        after_warmup = self.total_steps - self.warmup_steps
        # progress through the post-warm-up phase, in [0, 1]; the last step reaches 1
        progress = (step - self.warmup_steps) / max(after_warmup - 1, 1)
        progress = min(max(progress, 0.0), 1.0)
        final = self.final_lr_fraction
        if self.kind == "constant":
            return 1.0
        if self.kind == "paper":
            # flat_fraction 1 (allowed) holds the peak throughout; it must not divide by 0
            if progress < self.flat_fraction or self.flat_fraction == 1.0:
                return 1.0
            remaining = (1.0 - progress) / (1.0 - self.flat_fraction)
            return final + (1.0 - final) * remaining
        if self.kind == "cosine":
            return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
        # wsd: stable, then a cool-down over the last decay_fraction of all steps
        decay_start = fork_step(self.total_steps, self.decay_fraction)
        decay_steps = self.total_steps - decay_start
        if step < decay_start or decay_steps == 0:
            return 1.0
        cooled = (step - decay_start + 1) / decay_steps
        if self.decay_shape == "sqrt":
            return final + (1.0 - final) * (1.0 - math.sqrt(cooled))
        if self.decay_shape == "cosine":
            return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * cooled))
        # linear, written as before decay shapes existed so that old trials stay bit-identical
        return 1.0 - (1.0 - final) * cooled

    def lr(self, step: int) -> float:
        return self.peak_lr * self.factor(step)

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check_matches(self, state: dict[str, Any]) -> None:
        """Refuse to resume under a schedule other than the one the checkpoint was made with."""
        # checkpoints from before decay shapes were written by the linear shape
        state = {"decay_shape": "linear", **state}
        if state != self.state_dict():
            raise CheckpointError(
                f"checkpoint was written with schedule {state}, but this trial uses "
                f"{self.state_dict()}; use a new output_dir or the original trial config"
            )
