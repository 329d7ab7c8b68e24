"""The prepared GPU check: one script a session lent a GPU runs once, within a time limit.

    bash benchmarks/gpu_check.sh                       # on the GPU machine: d16, d20, d24, d30
    bash benchmarks/gpu_check.sh --device cpu --smoke  # the CPU smoke mode the test suite runs

For each depth at 256px in bf16 it takes the per-GPU share of the paper study's global batch
(studies/var_imagenet256.yaml: batch 768 over 4 GPUs at d16, 8 at d20 and d24; 1024 over 8 at
d30), lets `var_model.memory.choose_execution` pick the micro-batch and checkpointing for this
device's memory, and times the training step (forward, backward, AdamW) for each execution
choice: eager SDPA, compiled SDPA, compiled scalewise (one unmasked SDPA per scale, which
leaves flash attention available) and compiled FlexAttention. It records images/s, achieved
TFLOP/s by the exact FLOP count, the fraction of the device's dense bf16 peak, and the
measured peak memory against the plan. It writes a markdown report (default
docs/GPU_RESULTS.md) and a throughput file that studies can name as
`resources.throughput_file`.

A deadline (default 450 s, under the 8 minutes the issue allows) bounds the whole run: a
measurement that would start after it is recorded as not run, and the report is written
after every measurement, so a run cut short still leaves its numbers.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # runnable from a checkout without installing

from var_model import bench  # noqa: E402
from var_model.attention import flex_trains_on  # noqa: E402
from var_model.config import VARConfig  # noqa: E402
from var_model.errors import ConfigError  # noqa: E402
from var_model.files import atomic_write_text  # noqa: E402
from var_model.memory import choose_execution, training_memory  # noqa: E402
from var_model.throughput import save_record  # noqa: E402

# (depth, global batch, GPUs per trial) of the paper's study (studies/var_imagenet256.yaml)
# (d24 and d30 span 2 and 4 nodes of 8 GPUs since issue 14; the per-GPU share is what one GPU runs)
PAPER_TRIALS = ((16, 768, 4), (20, 768, 8), (24, 768, 16), (30, 1024, 32))
# the smoke mode: the same code path at sizes a CPU runs in seconds
SMOKE_TRIALS = ((1, 2, 1),)
# (label, compile, attention kernel)
VARIANTS = (
    ("eager SDPA", False, "sdpa"),
    ("compiled SDPA", True, "sdpa"),
    ("compiled scalewise", True, "scalewise"),
    ("compiled flex", True, "flex"),
)
SMOKE_MEMORY_BYTES = 4 * 10**9  # the budget the smoke mode plans against (CPU has no device memory)


@dataclass
class Row:
    depth: int
    variant: str
    micro_batch: int
    checkpointing: str
    planned_bytes: int
    images_per_second: float | None = None
    achieved_tflops: float | None = None
    fraction_of_peak: float | None = None
    measured_peak_bytes: int | None = None
    note: str = ""


def _device_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return SMOKE_MEMORY_BYTES


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or 'host'})"


def _gb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e9:.1f} GB"


def _number(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def write_report(path: Path, rows: list[Row], device: torch.device, started: float, smoke: bool) -> None:
    peak = bench.known_peak_tflops(device)
    lines = [
        "# GPU check results" + (" (CPU smoke mode: not GPU numbers)" if smoke else ""),
        "",
        f"Written by `bash benchmarks/gpu_check.sh{' --device cpu --smoke' if smoke else ''}` "
        f"on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {time.time() - started:.0f} s in all.",
        "",
        f"- device: {_device_name(device)}; memory {_gb(_device_memory_bytes(device))}"
        + (f"; dense bf16 peak {peak:.0f} TFLOP/s" if peak else ""),
        f"- torch {torch.__version__}" + (f", CUDA {torch.version.cuda}" if device.type == "cuda" else ""),
        "- step: forward, backward and AdamW at 256px in "
        + ("bf16 autocast" if device.type == "cuda" else "float32")
        + "; TFLOP/s by the exact FLOP count (var_model.counting)",
        "- micro-batch and checkpointing: what `choose_execution` chose for the per-GPU share of the paper "
        "study's global batch on this device's memory (10% margin)",
        "",
        "| depth | variant | micro-batch | checkpointing | images/s | TFLOP/s | of peak | peak memory | plan | "
        "measured / plan | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = (row.measured_peak_bytes / row.planned_bytes) if row.measured_peak_bytes else None
        of_peak = "-" if row.fraction_of_peak is None else f"{100 * row.fraction_of_peak:.1f}%"
        lines.append(
            f"| d{row.depth} | {row.variant} | {row.micro_batch} | {row.checkpointing} | "
            f"{_number(row.images_per_second, '.1f')} | {_number(row.achieved_tflops, '.1f')} | "
            f"{of_peak} | "
            f"{_gb(row.measured_peak_bytes)} | {_gb(row.planned_bytes)} | {_number(ratio, '.2f')} | {row.note} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + "\n")


def run_check(
    device: torch.device,
    smoke: bool,
    out: Path,
    throughput_file: Path | None,
    deadline_seconds: float,
    steps: int,
    warmup: int,
) -> list[Row]:
    started = time.time()
    precision = "bf16" if device.type == "cuda" else "fp32"
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    memory_bytes = _device_memory_bytes(device)
    rows: list[Row] = []
    for depth, global_batch, gpus in SMOKE_TRIALS if smoke else PAPER_TRIALS:
        config = VARConfig(depth=depth)
        share = global_batch // gpus
        plan = choose_execution(
            config, global_batch=share, world_size=1, gpu_memory_bytes=memory_bytes, precision=precision
        )
        checkpointing = plan.activation_checkpointing
        for label, compiled, attention in VARIANTS:
            planned = training_memory(
                config,
                plan.micro_batch_size,
                precision,
                checkpointing,
                shards=1,
                attention=attention,
                accumulation_steps=plan.accumulation_steps,
                device=device.type,
            ).total_bytes
            row = Row(depth, label, plan.micro_batch_size, checkpointing, planned)
            rows.append(row)
            if time.time() - started > deadline_seconds:
                row.note = "not run: past the deadline"
                write_report(out, rows, device, started, smoke)
                continue
            if attention == "flex" and not flex_trains_on(device.type):
                row.note = f"not run: torch {torch.__version__} has no FlexAttention backward on {device.type}"
                write_report(out, rows, device, started, smoke)
                continue
            try:
                result = bench.benchmark(
                    depth=depth,
                    batch=plan.micro_batch_size,
                    device=str(device),
                    dtype=dtype,
                    steps=steps,
                    warmup=warmup,
                    compile=compiled,
                    attention=attention,
                    activation_checkpointing=checkpointing == "blocks",
                )
            except (RuntimeError, ConfigError) as error:  # an OOM or a compile failure is a result here
                row.note = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            else:
                row.images_per_second = result["images_per_second"]
                row.achieved_tflops = result["achieved_flops"] / 1e12
                row.fraction_of_peak = result.get("fraction_of_peak")
                row.measured_peak_bytes = result.get("peak_memory_bytes")
                if throughput_file is not None:
                    save_record(throughput_file, bench.throughput_record(result))
            write_report(out, rows, device, started, smoke)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="tiny depths and steps: the same code path in seconds")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "GPU_RESULTS.md")
    parser.add_argument(
        "--throughput-file",
        type=Path,
        default=None,
        help="also save the measured FLOP/s here (default: benchmarks/throughput/<device>.json)",
    )
    parser.add_argument("--deadline-seconds", type=float, default=450.0)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (compilation happens here)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but no CUDA device is visible; use --device cpu --smoke", file=sys.stderr)
        return 2
    if device.type == "cpu" and not args.smoke:
        print("gpu_check: the full check needs a GPU; on CPU run the smoke mode (--smoke)", file=sys.stderr)
        return 2
    steps = args.steps or (1 if args.smoke else 5)
    warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 2)
    throughput_file = args.throughput_file
    if throughput_file is None and not args.smoke:
        throughput_file = REPO_ROOT / "benchmarks" / "throughput" / "gpu_check.json"
    rows = run_check(device, args.smoke, args.out, throughput_file, args.deadline_seconds, steps, warmup)
    measured = sum(row.images_per_second is not None for row in rows)
    print(f"gpu_check: {measured} of {len(rows)} measurements; report at {args.out}")
    for row in rows:
        print(
            f"  d{row.depth:<3} {row.variant:18s} micro-batch {row.micro_batch:<4} "
            f"{_number(row.images_per_second, '.1f'):>8} images/s  {_number(row.achieved_tflops, '.2f'):>8} TFLOP/s"
            f"  {row.note}"
        )
    failed = [row for row in rows if row.note.startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
