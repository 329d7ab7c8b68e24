"""`varscale dry-run`: what a study would cost, before anything runs.

Numbers come from the configs alone (var_model.counting), so a d30 row costs microseconds and
no memory. Estimated time = trial FLOPs / (resources.flops_per_second x GPUs per trial), or
/ (resources.cpu_flops_per_second x threads) for CPU trials: set both from `varscale bench` on
the target hardware.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from analysis.text import short_duration, text_table
from orchestration.study.spec import StudySpec
from orchestration.study.trial_config import plan_study
from orchestration.study.trials import TrialSpec


def resources_text(trial: TrialSpec) -> str:
    parts = [f"cpu {trial.cpus:g}"]
    if trial.gpus:
        parts.append(f"gpu {trial.gpus:g}")
    parts += [f"{name} {amount:g}" for name, amount in trial.custom_resources.items() if amount]
    return ", ".join(parts)


def dry_run_rows(spec: StudySpec) -> list[dict]:
    rows = []
    for trial in plan_study(spec):
        seconds = trial.estimated_seconds(spec.resources.flops_per_second, spec.resources.cpu_flops_per_second)
        rows.append(
            {
                "trial": trial.key,
                "depth": trial.depth,
                "width": trial.width,
                "heads": trial.heads,
                "params": trial.params_total,
                "flops_per_image": trial.flops_per_image,
                "steps": trial.steps,
                "batch": trial.batch_size,
                "lr": trial.lr,
                "images": trial.images,
                "flops": trial.flops,
                "resources": resources_text(trial),
                "seconds": seconds,
                "gpu_hours": seconds * trial.gpus / 3600.0,
                "cpu_hours": seconds * trial.cpus / 3600.0,
                "gpus": trial.gpus,
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
    Column("batch", lambda row: str(row["batch"])),
    Column("lr", lambda row: f"{row['lr']:.3g}"),
    Column("images", lambda row: f"{row['images']:,}"),
    Column("total FLOPs", lambda row: f"{row['flops']:.4g}"),
    Column("resources", lambda row: row["resources"], numeric=False),
    Column("est. time", lambda row: short_duration(row["seconds"])),
)


def dry_run_table(spec: StudySpec) -> str:
    rows = dry_run_rows(spec)
    text = text_table(
        [column.header for column in COLUMNS],
        [[column.cell(row) for column in COLUMNS] for row in rows],
        right_aligned=[column.numeric for column in COLUMNS],
        rule=True,
    )
    total_flops = sum(row["flops"] for row in rows)
    gpu_hours = sum(row["gpu_hours"] for row in rows)
    cpu_hours = sum(row["cpu_hours"] for row in rows if not row["gpus"])
    longest = max(row["seconds"] for row in rows)
    text.append("")
    text.append(
        f"{spec.name}: {len(rows)} trials, {total_flops:.4g} FLOP = {total_flops / 1e15:.4g} PFLOP, "
        f"{gpu_hours:.4g} GPU-hours + {cpu_hours:.4g} CPU-hours (at {spec.resources.flops_per_second:.3g} FLOP/s "
        f"per GPU, {spec.resources.cpu_flops_per_second:.3g} per CPU thread), longest trial {short_duration(longest)}"
    )
    return "\n".join(text)
