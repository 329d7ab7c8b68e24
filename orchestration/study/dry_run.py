"""`varscale dry-run`: what a study would cost, before anything runs.

Numbers come from the configs alone (var_model.counting, var_model.memory), so a d30 row costs
microseconds and no memory. Each GPU trial shows its execution plan (micro-batch, accumulation
steps, sharding, checkpointing: orchestration.study.execution_plan) and its estimated peak per
GPU against resources.gpu_memory_gb. Estimated time = trial FLOPs / achieved FLOP/s, measured
(resources.throughput_file) or stated (orchestration.study.time_estimates); the table says which.

Under `budgets.strategy: branches` the time and GPU-hours count what actually runs: a trunk to
its last fork, a branch its cooldown only ("steps run"); the "steps" column is where a trial's
counters end. The compute of both strategies is printed with the saving: per (depth, seed),
(1 - f) x B_k + f x (B_1 + ... + B_k) against B_1 + ... + B_k (orchestration.study.branches),
and the FLOPs that run on whole steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from analysis.text import short_duration, text_table
from orchestration.study.branches import BRANCH, StrategyCompute, saving_text, strategy_compute
from orchestration.study.data_section import data_root_problem
from orchestration.study.spec import StudySpec
from orchestration.study.time_estimates import TimeEstimates
from orchestration.study.trial_config import plan_study
from orchestration.study.trials import TrialSpec
from var_model.memory import BYTES_PER_GB


def resources_text(trial: TrialSpec) -> str:
    parts = [f"cpu {trial.cpus:g}"]
    if trial.gpus:
        # a trial over several nodes: one placement-group bundle per node, the GPUs split evenly
        nodes = f" on {trial.nodes} nodes" if trial.nodes and trial.nodes > 1 else ""
        parts.append(f"gpu {trial.gpus:g}{nodes}")
    parts += [f"{name} {amount:g}" for name, amount in trial.custom_resources.items() if amount]
    return ", ".join(parts)


def peak_text(trial: TrialSpec) -> str:
    """'61.2 / 80 GB': the plan's peak per GPU against the memory it was planned for."""
    plan = trial.execution.plan
    if plan is None:
        return f"none ({trial.execution.device})"
    return f"{plan.memory.total_bytes / BYTES_PER_GB:.1f} / {plan.gpu_memory_bytes / BYTES_PER_GB:g} GB"


def dry_run_rows(spec: StudySpec) -> list[dict]:
    trials = plan_study(spec, for_launch=False)
    return _rows(trials, TimeEstimates.for_study(spec, trials))


def _rows(trials: list[TrialSpec], estimates: TimeEstimates) -> list[dict]:
    rows = []
    for trial in trials:
        seconds = estimates.seconds(trial)
        execution, plan = trial.execution, trial.execution.plan
        rows.append(
            {
                "trial": trial.key,
                "role": trial.role,
                "depth": trial.depth,
                "width": trial.width,
                "heads": trial.heads,
                "params": trial.params_total,
                "flops_per_image": trial.flops_per_image,
                "steps": trial.steps,
                "steps_trained": trial.steps_trained,
                "batch": trial.batch_size,
                "lr": trial.lr,
                "images": trial.images,
                "flops": trial.flops,
                "flops_trained": trial.flops_trained,
                "resources": resources_text(trial),
                "seconds": seconds,
                "gpu_hours": seconds * trial.gpus / 3600.0,
                "cpu_hours": seconds * trial.cpus / 3600.0,
                "gpus": trial.gpus,
                "nodes": trial.nodes,  # None: several GPUs, gpus_per_node read from the cluster at launch
                "micro_batch_size": execution.micro_batch_size,  # None: the whole per-rank share
                "accumulation_steps": execution.accumulation_steps,
                "sharding": execution.sharding,
                "activation_checkpointing": execution.activation_checkpointing,
                "peak_bytes": plan.memory.total_bytes if plan else None,  # None: no memory plan (CPU)
                "gpu_memory_bytes": plan.gpu_memory_bytes if plan else None,
                "peak": peak_text(trial),
            }
        )
    return rows


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[dict], str]  # the text of this column for one row of dry_run_rows
    numeric: bool = True  # numbers are right-aligned, text left-aligned


# The table's columns, in order: a new column is one entry here.
COLUMNS = (
    Column("trial", lambda row: row["trial"], numeric=False),
    Column("depth", lambda row: str(row["depth"])),
    Column("width", lambda row: str(row["width"])),
    Column("params", lambda row: f"{row['params']:,}"),
    Column("FLOPs/image", lambda row: f"{row['flops_per_image']:.4g}"),
    Column("steps", lambda row: f"{row['steps']:,}"),
    Column("steps run", lambda row: f"{row['steps_trained']:,}"),
    Column("batch", lambda row: str(row["batch"])),
    Column("lr", lambda row: f"{row['lr']:.3g}"),
    Column("images", lambda row: f"{row['images']:,}"),
    Column("FLOPs run", lambda row: f"{row['flops_trained']:.4g}"),
    Column("resources", lambda row: row["resources"], numeric=False),
    Column("micro-batch", lambda row: "whole" if row["micro_batch_size"] is None else str(row["micro_batch_size"])),
    Column("accum.", lambda row: str(row["accumulation_steps"])),
    Column("sharding", lambda row: row["sharding"], numeric=False),
    Column("checkpointing", lambda row: row["activation_checkpointing"], numeric=False),
    Column("peak / GPU", lambda row: row["peak"]),
    Column("est. time", lambda row: short_duration(row["seconds"])),
)


def memory_note(spec: StudySpec, trials: list[TrialSpec]) -> str:
    plans = [trial.execution.plan for trial in trials if trial.execution.plan is not None]
    if not plans:
        return "peak / GPU: no memory plan (no trial runs on a GPU); micro-batch 'whole' = the trial's whole batch"
    return (
        f"peak / GPU: var_model.memory's plan per trial against resources.gpu_memory_gb "
        f"{spec.resources.gpu_memory_gb:g} GB, each kept under {1 - plans[0].margin:.0%} of it; "
        "micro-batch x accum. x GPUs = batch"
    )


def nodes_note(spec: StudySpec, trials: list[TrialSpec]) -> str | None:
    """How trials with several GPUs are placed, when any trial has them."""
    largest = max(trials, key=lambda trial: trial.gpus)
    if largest.gpus <= 1:
        return None
    per_node = spec.resources.gpus_per_node
    if per_node is None:
        return (
            f"nodes: resources.gpus_per_node is not set, so launch reads it from the cluster; a trial with more "
            f"GPUs than one node has (here up to {largest.gpus:g}) runs over several nodes"
        )
    spanning = [trial for trial in trials if trial.nodes > 1]
    if not spanning:
        return f"nodes: every trial fits on one node of resources.gpus_per_node {per_node} GPUs"
    widest = max(spanning, key=lambda trial: trial.nodes)
    return (
        f"nodes: {len(spanning)} trials span nodes of resources.gpus_per_node {per_node} GPUs (up to "
        f"{widest.nodes}, {widest.key}), data-parallel over all their GPUs; their time assumes every GPU "
        "keeps its one-node FLOP/s (measure a multi-node run to check)"
    )


def strategy_compute_of(spec: StudySpec) -> StrategyCompute:
    """Both strategies' compute in budget units, summed over every (depth, seed)."""
    groups = [(depth, seed) for depth in spec.model.depths for seed in spec.seeds]
    return sum(
        (strategy_compute(spec.budgets.for_depth(depth), spec.recipe.decay_fraction) for depth, _ in groups),
        StrategyCompute(0.0, 0.0),
    )


def strategy_text(spec: StudySpec, trials: list[TrialSpec]) -> str | None:
    """The compute of both strategies and the saving; None where branches cannot apply."""
    fraction = spec.recipe.decay_fraction
    if not 0 < fraction < 1:
        return None
    arithmetic = saving_text(strategy_compute_of(spec), spec.budgets.kind)
    formula = f"(1 - f) x B_k + f x (B_1 + ... + B_k) per (depth, seed), f = recipe.decay_fraction {fraction:g}"
    if spec.budgets.strategy != "branches":
        return f"compute: {arithmetic} ({formula}; set budgets.strategy: branches and recipe.schedule: wsd)"
    run = StrategyCompute(
        sum(trial.flops for trial in trials if trial.role == BRANCH), sum(trial.flops_trained for trial in trials)
    )
    return f"compute: {arithmetic} ({formula}); on whole steps {saving_text(run, 'FLOP')}"


def dry_run_table(spec: StudySpec) -> str:
    # priced before the data exists: launch refuses what `data_root_problem` names, dry-run says it
    trials = plan_study(spec, for_launch=False)
    estimates = TimeEstimates.for_study(spec, trials)
    rows = _rows(trials, estimates)
    text = text_table(
        [column.header for column in COLUMNS],
        [[column.cell(row) for column in COLUMNS] for row in rows],
        right_aligned=[column.numeric for column in COLUMNS],
        rule=True,
    )
    total_flops = sum(row["flops_trained"] for row in rows)
    gpu_hours = sum(row["gpu_hours"] for row in rows)
    cpu_hours = sum(row["cpu_hours"] for row in rows if not row["gpus"])
    longest = max(row["seconds"] for row in rows)
    text.append("")
    text.append(memory_note(spec, trials))
    placement = nodes_note(spec, trials)
    if placement:
        text.append(placement)
    text.append(estimates.describe())
    strategy = strategy_text(spec, trials)
    if strategy:
        text.append(strategy)
    text.append(
        f"{spec.name}: {len(rows)} trials, {total_flops:.4g} FLOP = {total_flops / 1e15:.4g} PFLOP, "
        f"{gpu_hours:.4g} GPU-hours + {cpu_hours:.4g} CPU-hours, longest trial {short_duration(longest)}"
    )
    missing = data_root_problem(spec.data)
    if missing:
        text.append(f"before launch: {missing}")
    return "\n".join(text)
