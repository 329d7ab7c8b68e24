"""The `branches` study strategy, planned: one trunk per (depth, seed) and one branch per budget.

With `budgets.strategy: independent` every (depth, budget, seed) trains from step 0. Before its
decay, a wsd run of budget B is warm-up then the peak LR, the same for every B (Hägele et al.
2024, arXiv 2405.18392), so `branches` trains that shared prefix once per (depth, seed), in a
**trunk** trial, and each budget's cooldown in a **branch** trial that starts from the trunk's
fork of that budget (the trainer's contract: var_model/training/forks.py):

- fork(B) = round((1 - decay_fraction) x steps(B)) (`schedules.fork_step`, the one place it is
  computed); the trunk trains steps 1 .. fork(B_k) of the largest budget B_k;
- the branch of B trains steps fork(B) + 1 .. steps(B) and equals, bit for bit on CPU, the
  independent wsd run of B with the same `warmup_steps`;
- so every trial of a trunk shares one warm-up fixed in steps: `recipe.warmup_steps`, else
  round(warmup_fraction x steps of the smallest budget).

What each strategy costs, per (depth, seed), in the budget's own units (`strategy_compute`):
independent B_1 + ... + B_k; branches (1 - f) x B_k + f x (B_1 + ... + B_k), the trunk to its
last fork plus every cooldown. The steps that actually run (`TrunkPlan.steps_trained`) are that
arithmetic on whole steps.

Pure: numbers in, numbers out (no TrialSpec, no files), so study.trials builds on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis import mlflow_schema as schema
from var_model.errors import ConfigError
from var_model.training.schedules import fork_step, fork_steps

STRATEGIES = ("independent", "branches")
# the role names MLflow records (ROLE_TAG), the trainer's TrialConfig.role names too
INDEPENDENT, TRUNK, BRANCH = schema.INDEPENDENT_ROLE, schema.TRUNK_ROLE, schema.BRANCH_ROLE


def strategy_problems(strategy: str, schedule: str, decay_fraction: float) -> list[str]:
    """What a study's recipe lacks for its budgets.strategy, one line per mistake naming the field."""
    if strategy != "branches":
        return []
    problems = []
    if schedule != "wsd":
        problems.append(
            f"recipe.schedule: {schedule!r}, but budgets.strategy branches needs schedule wsd (its branches "
            "fork the stable phase of one trunk); set recipe.schedule: wsd"
        )
    if not 0 < decay_fraction < 1:
        problems.append(
            f"recipe.decay_fraction: {decay_fraction}, but budgets.strategy branches needs it in (0, 1) (each "
            "branch's cooldown share of its steps; 0.2 by default)"
        )
    return problems


def trunk_key(depth: int, seed: int) -> str:
    """`d8-trunk-s0`: the trunk of (depth, seed); beside the branches' `d8-b1e12-s0` keys."""
    return f"d{depth}-{TRUNK}-s{seed}"


@dataclass(frozen=True)
class Branching:
    """Where a trunk or branch trial sits: its trunk, and the steps it trains, start_step + 1 ..
    end_step (a trunk: 0 .. its last fork; a branch: its fork .. its budget's last step)."""

    role: str  # TRUNK or BRANCH
    trunk_key: str
    start_step: int
    end_step: int
    fork_step: int | None = None  # a branch's: the step its fork holds
    fork_budgets: tuple[float, ...] = ()  # a trunk's: the budgets it forks, smallest first

    @property
    def steps_trained(self) -> int:
        return self.end_step - self.start_step


@dataclass(frozen=True)
class TrunkPlan:
    """One (depth, seed) under `branches`: the budgets' steps, their fork steps, the warm-up."""

    depth: int
    seed: int
    decay_fraction: float
    warmup_steps: int
    budget_steps: dict[float, int]  # budget -> steps(budget), smallest budget first
    fork_steps: dict[float, int]  # budget -> fork(budget)

    @property
    def key(self) -> str:
        return trunk_key(self.depth, self.seed)

    @property
    def budgets(self) -> tuple[float, ...]:
        return tuple(self.budget_steps)

    @property
    def last_fork(self) -> int:
        return max(self.fork_steps.values())

    def trunk(self) -> Branching:
        return Branching(TRUNK, self.key, 0, self.last_fork, fork_budgets=self.budgets)

    def branch(self, budget: float) -> Branching:
        fork = self.fork_steps[budget]
        return Branching(BRANCH, self.key, fork, self.budget_steps[budget], fork_step=fork)

    @property
    def steps_trained(self) -> int:
        """Steps that run under `branches`: the trunk to its last fork, plus every cooldown."""
        return self.trunk().steps_trained + sum(self.branch(budget).steps_trained for budget in self.budgets)

    @property
    def independent_steps(self) -> int:
        """Steps that run under `independent`: every budget from step 0."""
        return sum(self.budget_steps.values())


def branch_warmup_steps(budget_steps: dict[float, int], warmup_fraction: float, warmup_steps: int | None) -> int:
    """The warm-up every trial of one trunk shares: `warmup_steps` when the recipe sets it, else
    warmup_fraction of the smallest budget's steps (the independent runs' rule at that budget,
    so the shortest run warms up as it does today and the longer ones no more than it)."""
    if warmup_steps is not None:
        return warmup_steps
    return round(warmup_fraction * min(budget_steps.values()))


def plan_trunk(
    depth: int,
    seed: int,
    budget_steps: dict[float, int],
    decay_fraction: float,
    warmup_fraction: float,
    warmup_steps: int | None = None,
) -> TrunkPlan:
    """The trunk of (depth, seed) for budgets -> steps, checked: two budgets at one fork step
    (named, with what to change), a fork before the end of the warm-up, a budget without a
    decay step. The study's field names lead each message (the trainer's name its own)."""
    ordered = dict(sorted(budget_steps.items()))
    warmup = branch_warmup_steps(ordered, warmup_fraction, warmup_steps)
    by_step: dict[int, float] = {}
    for budget, steps in ordered.items():
        step = fork_step(steps, decay_fraction)
        if step in by_step:
            raise ConfigError(
                f"budgets.values: budgets {by_step[step]:g} ({ordered[by_step[step]]} steps) and {budget:g} "
                f"({steps} steps) both fork at step {step} at depth {depth} (recipe.decay_fraction "
                f"{decay_fraction}); under budgets.strategy branches each budget needs its own fork step: "
                "drop one of them or move them apart"
            )
        by_step[step] = budget
    try:
        forks = fork_steps(ordered, decay_fraction, warmup)
    except ConfigError as error:
        source = "recipe.warmup_steps" if warmup_steps is not None else "recipe.warmup_fraction"
        raise ConfigError(
            f"budgets.values: at depth {depth} under budgets.strategy branches (warm-up {warmup} steps from "
            f"{source}): {error}"
        ) from None
    return TrunkPlan(depth, seed, decay_fraction, warmup, ordered, forks)


@dataclass(frozen=True)
class StrategyCompute:
    """The compute of both strategies, in one unit (budget units, steps or FLOPs)."""

    independent: float
    branches: float

    def __add__(self, other: StrategyCompute) -> StrategyCompute:
        return StrategyCompute(self.independent + other.independent, self.branches + other.branches)

    @property
    def saving(self) -> float:
        """The fraction of the independent compute that branches do not spend."""
        return 1.0 - self.branches / self.independent


def strategy_compute(budgets: tuple[float, ...], decay_fraction: float) -> StrategyCompute:
    """For budgets B_1 < ... < B_k and decay fraction f: independent B_1 + ... + B_k, branches
    (1 - f) x B_k + f x (B_1 + ... + B_k): a trunk to the largest budget's fork, then a cooldown
    of f x B per budget."""
    total = sum(budgets)
    return StrategyCompute(total, (1.0 - decay_fraction) * max(budgets) + decay_fraction * total)


def saving_text(compute: StrategyCompute, unit: str) -> str:
    """'independent 8000 images, branches 7800 images: branches save 2.5%'"""
    return (
        f"independent {compute.independent:.4g} {unit}, branches {compute.branches:.4g} {unit}: "
        f"branches save {compute.saving:.1%}"
    )
