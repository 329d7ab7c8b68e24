"""`varscale dry-run`: what a study would cost, before anything runs.

Numbers come from the configs alone (var_model.counting), so a d30 row costs microseconds and
no memory. Estimated time = trial FLOPs / (resources.flops_per_second x GPUs per trial), or
/ (resources.cpu_flops_per_second x threads) for CPU trials: set both from `varscale bench` on
the target hardware.
"""

from __future__ import annotations

from orchestration.study_spec import StudySpec
from orchestration.trials import TrialSpec, expand


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def resources_text(trial: TrialSpec) -> str:
    parts = [f"cpu {trial.cpus:g}"]
    if trial.gpus:
        parts.append(f"gpu {trial.gpus:g}")
    parts += [f"{name} {amount:g}" for name, amount in trial.custom_resources.items() if amount]
    return ", ".join(parts)


def dry_run_rows(spec: StudySpec) -> list[dict]:
    rows = []
    for trial in expand(spec):
        seconds = trial.estimated_seconds(spec.resources.flops_per_second, spec.resources.cpu_flops_per_second)
        rows.append({
            "trial": trial.key, "depth": trial.depth, "width": trial.width, "heads": trial.heads,
            "params": trial.params_total, "flops_per_image": trial.flops_per_image,
            "steps": trial.steps, "batch": trial.batch_size, "lr": trial.lr, "images": trial.images,
            "flops": trial.flops, "resources": resources_text(trial), "seconds": seconds,
            "gpu_hours": seconds * trial.gpus / 3600.0, "cpu_hours": seconds * trial.cpus / 3600.0,
            "gpus": trial.gpus,
        })
    return rows


def dry_run_table(spec: StudySpec) -> str:
    rows = dry_run_rows(spec)
    header = ("trial", "depth", "width", "params", "FLOPs/image", "steps", "batch", "lr", "images",
              "total FLOPs", "resources", "est. time")
    lines = [[row["trial"], str(row["depth"]), str(row["width"]), f"{row['params']:,}",
              f"{row['flops_per_image']:.4g}", f"{row['steps']:,}", str(row["batch"]), f"{row['lr']:.3g}",
              f"{row['images']:,}", f"{row['flops']:.4g}", row["resources"], _duration(row["seconds"])]
             for row in rows]
    widths = [max(len(header[column]), *(len(line[column]) for line in lines)) for column in range(len(header))]
    text = ["  ".join(cell.rjust(width) if column not in (0, 10) else cell.ljust(width)
                      for column, (cell, width) in enumerate(zip(line, widths)))
            for line in [list(header)] + lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    total_flops = sum(row["flops"] for row in rows)
    gpu_hours = sum(row["gpu_hours"] for row in rows)
    cpu_hours = sum(row["cpu_hours"] for row in rows if not row["gpus"])
    longest = max(row["seconds"] for row in rows)
    text.append("")
    text.append(
        f"{spec.name}: {len(rows)} trials, {total_flops:.4g} FLOP = {total_flops / 1e15:.4g} PFLOP, "
        f"{gpu_hours:.4g} GPU-hours + {cpu_hours:.4g} CPU-hours (at {spec.resources.flops_per_second:.3g} FLOP/s "
        f"per GPU, {spec.resources.cpu_flops_per_second:.3g} per CPU thread), longest trial {_duration(longest)}"
    )
    return "\n".join(text)
