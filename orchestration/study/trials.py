"""Expand a study into its trials: one TrialSpec per (depth, budget, seed), fully resolved;
under `budgets.strategy: branches`, one trunk per (depth, seed) besides (study.branches).

The trial key (`d8-b1e12-s0`) is a trial's identity everywhere: the MLflow child run's tag,
the checkpoint folder, the retry and resume bookkeeping. It depends only on depth, budget and
seed, so changing the recipe of a study and relaunching resumes the same trials: change the
study name for a new experiment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from orchestration.study.branches import INDEPENDENT, Branching, plan_trunk
from orchestration.study.execution_plan import TrialExecution, plan_execution, world_size
from orchestration.study.geometry import vqvae_config
from orchestration.study.model_section import var_config
from orchestration.study.resource_section import node_count
from orchestration.study.spec import StudySpec
from var_model.config import VARConfig, VQVAEConfig
from var_model.counting import flops_per_image, param_counts
from var_model.errors import ConfigError
from var_model.training.budget import StepCost, steps_for_budget


def format_budget(value: float) -> str:
    """1e12 -> '1e12', 2.5e11 -> '2.5e11', 12000 -> '12000' (short, stable, filesystem-safe)."""
    if value == int(value) and value < 1e6:
        return str(int(value))
    text = f"{value:.4g}"
    return text.replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def trial_key(depth: int, budget_value: float, seed: int) -> str:
    return f"d{depth}-b{format_budget(budget_value)}-s{seed}"


@dataclass(frozen=True)
class TrialSpec:
    key: str
    depth: int
    width: int
    heads: int
    seed: int
    budget_kind: str
    budget_value: float
    steps: int  # where its counters end: its budget's steps (a trunk: its last fork)
    batch_size: int
    base_lr: float
    lr: float
    warmup_steps: int
    final_lr_fraction: float
    params_total: int
    params_per_token: int
    flops_per_image: int  # training FLOPs per image (forward + backward), counted per layer
    flops_per_image_6n: int  # the 6 * N * L rule of thumb, for comparison
    images: int
    tokens: int
    flops: float  # total training FLOPs of the trial
    cpus: float
    gpus: float
    execution: TrialExecution  # micro-batch, accumulation, sharding, memory plan (execution_plan)
    custom_resources: dict = field(default_factory=dict)
    # GPUs of one node (resources.gpus_per_node); None: the cluster's, known at launch
    gpus_per_node: int | None = None
    var_config: VARConfig | None = None
    branching: Branching | None = None  # a trunk's or branch's place (None: an independent trial)

    @property
    def role(self) -> str:
        return self.branching.role if self.branching else INDEPENDENT

    @property
    def steps_trained(self) -> int:
        """The steps this trial runs: a branch starts at its fork."""
        return self.branching.steps_trained if self.branching else self.steps

    @property
    def flops_trained(self) -> float:
        """The training FLOPs this trial spends (`flops` counts a branch's budget from step 0)."""
        return float(self.steps_trained) * self.batch_size * self.flops_per_image

    @property
    def nodes(self) -> int | None:
        """Nodes (Ray placement group bundles) the trial spans, each with gpus / nodes GPUs and
        cpus / nodes CPUs; None when it has several GPUs and gpus_per_node is the cluster's."""
        return node_count(self.gpus, self.gpus_per_node)

    @property
    def threads(self) -> int:
        """Torch threads of each of the trial's processes (one per GPU, or one)."""
        # One thread per whole CPU the process holds: more threads than the CPU share only
        # makes trials packed on one node, or the ranks of one trial, fight over cores.
        return max(1, int(math.floor(self.cpus / world_size(self.gpus))))

    def estimated_seconds(self, gpu_flops_per_second: float, cpu_flops_per_second: float) -> float:
        if self.gpus:
            # a fraction of a GPU gets that fraction of its throughput
            return self.flops_trained / (gpu_flops_per_second * self.gpus)
        return self.flops_trained / (cpu_flops_per_second * self.threads)


def _steps_for(spec: StudySpec, budget: float, cost: StepCost, depth: int) -> int:
    # The trainer's own rule (var_model.training.budget), so dry-run and training agree.
    try:
        return steps_for_budget(spec.budgets.kind, budget, cost)
    except ConfigError as error:
        raise ConfigError(
            f"budgets.values: {spec.budgets.kind} budget {format_budget(budget)} gives 0 steps at depth "
            f"{depth} with recipe.batch_size {cost.images}: {error}"
        ) from None


def tokenizer_config(spec: StudySpec) -> VQVAEConfig:
    """The study's tokenizer architecture (its preset, overrides, resolution and scales)."""
    return vqvae_config(spec.tokenizer.preset, spec.tokenizer.overrides, spec.data.resolution, spec.model.patch_nums)


def var_config_for(spec: StudySpec, depth: int) -> VARConfig:
    # the spec's validation has built it once, so its fields are known to be valid
    return var_config(spec.model, tokenizer_config(spec), depth)


def branch_trials(spec: StudySpec, group: list[TrialSpec]) -> list[TrialSpec]:
    """The independent trials of one (depth, seed) as its trunk and one branch per budget, all
    with the warm-up they share (study.branches)."""
    first = group[0]
    plan = plan_trunk(
        first.depth,
        first.seed,
        {trial.budget_value: trial.steps for trial in group},
        spec.recipe.decay_fraction,
        spec.recipe.warmup_fraction,
        spec.recipe.warmup_steps,
    )
    largest = max(group, key=lambda trial: trial.budget_value)
    images = plan.last_fork * largest.batch_size
    trunk = replace(
        largest,
        key=plan.key,
        steps=plan.last_fork,
        images=images,
        tokens=images * (largest.tokens // largest.images),
        flops=float(images) * largest.flops_per_image,
        warmup_steps=plan.warmup_steps,
        branching=plan.trunk(),
    )
    branches = [
        replace(trial, warmup_steps=plan.warmup_steps, branching=plan.branch(trial.budget_value)) for trial in group
    ]
    return [trunk, *branches]


def expand(spec: StudySpec) -> list[TrialSpec]:
    """All trials of the study, ordered by depth, budget, seed (the launch order); under
    branches by depth, then per seed the trunk and its branches by budget."""
    trials = [
        trial
        for depth in sorted(spec.model.depths)
        for trial in _strategy_trials(spec, _independent_trials(spec, depth))
    ]
    keys = [trial.key for trial in trials]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ConfigError(f"budgets.values: budgets that print the same give duplicate trial keys {duplicates}")
    return trials


def _strategy_trials(spec: StudySpec, trials: list[TrialSpec]) -> list[TrialSpec]:
    if spec.budgets.strategy != "branches":
        return trials
    return [trial for seed in spec.seeds for trial in branch_trials(spec, [t for t in trials if t.seed == seed])]


def _independent_trials(spec: StudySpec, depth: int) -> list[TrialSpec]:
    trials = []
    config = var_config_for(spec, depth)
    counts = param_counts(config)
    image_flops = int(flops_per_image(config, training=True))
    tokens_per_image = config.sequence_length
    batch_size = spec.recipe.batch_size.at(depth)
    gpus = spec.resources.gpus.at(depth)
    keys = [trial_key(depth, budget, seed) for budget in spec.budgets.for_depth(depth) for seed in spec.seeds]
    execution = plan_execution(spec, depth, config, gpus, f"trial{'s' if len(keys) > 1 else ''} {', '.join(keys)}")
    for budget in spec.budgets.for_depth(depth):
        cost = StepCost.for_batch(batch_size, tokens_per_image, image_flops)
        steps = _steps_for(spec, budget, cost, depth)
        images = steps * batch_size
        for seed in spec.seeds:
            trials.append(
                TrialSpec(
                    key=trial_key(depth, budget, seed),
                    depth=depth,
                    width=config.width,
                    heads=config.num_heads,
                    seed=seed,
                    budget_kind=spec.budgets.kind,
                    budget_value=budget,
                    steps=steps,
                    batch_size=batch_size,
                    base_lr=spec.recipe.base_lr.at(depth),
                    lr=spec.recipe.lr(depth),
                    warmup_steps=(
                        spec.recipe.warmup_steps
                        if spec.recipe.warmup_steps is not None
                        else int(round(spec.recipe.warmup_fraction * steps))
                    ),
                    final_lr_fraction=spec.recipe.final_lr_fraction.at(depth),
                    params_total=int(counts["total"]),
                    params_per_token=int(counts["per_token"]),
                    flops_per_image=image_flops,
                    flops_per_image_6n=6 * int(counts["total"]) * tokens_per_image,
                    images=images,
                    tokens=images * tokens_per_image,
                    flops=float(images) * image_flops,
                    cpus=spec.resources.cpus.at(depth),
                    gpus=gpus,
                    custom_resources={name: rule.at(depth) for name, rule in spec.resources.custom.items()},
                    gpus_per_node=spec.resources.gpus_per_node,
                    var_config=config,
                    execution=execution,
                )
            )
    return trials
