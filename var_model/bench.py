"""Micro-benchmark of one VAR training step, with achieved FLOP/s.

Tiny CPU run first:
    python -m var_model.bench --depth 2 --batch 2 --steps 2
GPU, the released d16 in bf16, compiled, FlexAttention, recorded in a throughput file:
    python -m var_model.bench --depth 16 --batch 32 --device cuda --dtype bfloat16 --steps 10 \\
        --compile --attention flex --save throughput.json

A step is what the trainer does per global step at one micro-batch: forward, cross-entropy,
backward, gradient clipping (2.0) and an AdamW step (the trainer's parameter groups; fused on
CUDA, and on CPU with --fused-adamw), then zero_grad. FLOP/s use the exact training count of
`var_model.counting.flops_per_image` (matmuls only, block-causal attention pairs only, AdaLN
once per image); the optimizer's elementwise work is not counted, and the 6*N*L figure is
printed for comparison. The timed steps follow `--warmup` untimed ones (where compilation
happens), so the per-step time is the steady state; the set-up time is printed apart.
This is a measurement command, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from var_model import counting, throughput
from var_model.attention import (
    ATTENTION_KERNELS,
    check_attention_kernel,
    default_attention_kernel,
    flex_trains_on,
)
from var_model.config import PATCH_NUMS_256, PATCH_NUMS_512, VARConfig
from var_model.errors import ConfigError
from var_model.training.optimizer import build_optimizer
from var_model.var import VAR

# dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from the vendors' data sheets
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
GRAD_CLIP = 2.0  # the trainer's default (TrialConfig.grad_clip)


def known_peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAK_BF16_TFLOPS.items():
        if key in name:
            return peak
    return None


def _cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device) -> str:
    """The name a throughput file records: the GPU's name, or the CPU's model with the torch
    thread count (CPU throughput scales with threads, so it is part of the name)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"{_cpu_model_name()} ({threads} thread{'s' if threads > 1 else ''})"
    return device.type


def benchmark(
    depth: int,
    batch: int = 4,
    device: str = "cpu",
    dtype: str = "float32",
    steps: int = 5,
    warmup: int = 2,
    image_size: int = 256,
    seed: int = 0,
    compile: bool = False,
    attention: str = "sdpa",
    activation_checkpointing: bool = False,
    fused_adamw: bool | None = None,
) -> dict:
    """Time `steps` training steps (see the module docstring) of a VAR of this depth on random tokens.

    `fused_adamw`: torch's fused AdamW kernel (None: on CUDA only, torch's own default
    elsewhere, which on CPU is the per-parameter loop)."""
    if dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"dtype={dtype!r} is not allowed: float32 or bfloat16")
    if image_size not in (256, 512):
        raise ConfigError(f"image_size={image_size!r} is not allowed: 256 or 512")
    if steps < 1 or batch < 1:
        raise ConfigError(f"steps={steps}, batch={batch}: both must be >= 1")
    if compile and warmup < 1:
        raise ConfigError(
            f"warmup={warmup} with compile: compilation happens in the first step, "
            "so give --warmup 1 or more to time the steady state"
        )
    check_attention_kernel(attention)
    torch_device = torch.device(device)
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but CUDA is not available here")
    if attention == "flex" and not flex_trains_on(torch_device.type):
        raise ConfigError(
            f"attention='flex' cannot train on {torch_device.type} with torch {torch.__version__} "
            f"(no FlexAttention backward there); use "
            f"--attention {default_attention_kernel(torch_device.type)}"
        )
    set_up_start = time.perf_counter()
    torch.manual_seed(seed)
    config = VARConfig(depth=depth, patch_nums=PATCH_NUMS_256 if image_size == 256 else PATCH_NUMS_512)
    var = VAR(config).to(torch_device).train()
    var.use_attention_kernel(attention)
    var.use_activation_checkpointing(activation_checkpointing)
    model = torch.compile(var) if compile else var
    if fused_adamw is None:
        fused_adamw = torch_device.type == "cuda"
    optimizer = build_optimizer(var, lr=1e-4, fused=fused_adamw)
    L, V = config.sequence_length, config.codebook_size
    x_BLC = torch.randn(batch, L - config.first_length, config.latent_channels, device=torch_device)
    target_BL = torch.randint(0, V, (batch, L), device=torch_device)
    label_B = torch.randint(0, config.num_classes, (batch,), device=torch_device)
    autocast = (
        torch.autocast(device_type=torch_device.type, dtype=torch.bfloat16)
        if dtype == "bfloat16"
        else contextlib.nullcontext()
    )

    def step() -> None:
        with autocast:
            logits_BLV = model(label_B, x_BLC)
        loss = F.cross_entropy(logits_BLV.view(-1, V), target_BL.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(var.parameters(), GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def synchronize() -> None:
        if torch_device.type == "cuda":
            torch.cuda.synchronize(torch_device)  # kernels are asynchronous: wait before reading the clock

    for _ in range(warmup):
        step()
    synchronize()
    if torch_device.type == "cuda":
        # the steady-state peak: after warm-up, so compilation's own allocations do not count
        torch.cuda.reset_peak_memory_stats(torch_device)
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    synchronize()
    seconds = (time.perf_counter() - start) / steps
    # CPU time of this process: on a shared machine it leaves out the time spent waiting for a
    # core, so on CPU it is the steadier figure (it sums over threads: compare at equal threads)
    cpu_seconds = (time.process_time() - start_cpu) / steps
    exact = counting.flops_per_image(config, training=True)
    six_nl = counting.six_n_l(config)
    images_per_second = batch / seconds
    result = {
        "depth": depth,
        "batch": batch,
        "params": counting.param_counts(config)["total"],
        "device_name": device_name(torch_device),
        "precision": dtype,
        "compile": compile,
        "attention": attention,
        "activation_checkpointing": activation_checkpointing,
        "fused_adamw": fused_adamw,
        "image_size": image_size,
        "seconds_per_step": seconds,
        "cpu_seconds_per_step": cpu_seconds,
        "set_up_seconds": start - set_up_start,
        "ms_per_image": 1000 * seconds / batch,
        "images_per_second": images_per_second,
        "flops_per_image": exact,
        "flops_per_image_6nl": six_nl,
        "achieved_flops": exact * images_per_second,
        "achieved_flops_6nl": six_nl * images_per_second,
    }
    if torch_device.type == "cuda":
        result["peak_memory_bytes"] = torch.cuda.max_memory_allocated(torch_device)
    peak = known_peak_tflops(torch_device)
    if peak is not None and dtype == "bfloat16":
        result["peak_flops"] = peak * 1e12
        result["fraction_of_peak"] = result["achieved_flops"] / result["peak_flops"]
    return result


def throughput_record(result: dict) -> throughput.ThroughputRecord:
    """The throughput-file record of one `benchmark` result (its batch is the micro-batch)."""
    return throughput.ThroughputRecord(
        device_name=result["device_name"],
        depth=result["depth"],
        image_size=result["image_size"],
        precision=result["precision"],
        compile=result["compile"],
        attention=result["attention"],
        micro_batch=result["batch"],
        activation_checkpointing=result["activation_checkpointing"],
        flops_per_second=result["achieved_flops"],
        images_per_second=result["images_per_second"],
    )


def format_result(result: dict, device: str, dtype: str) -> str:
    choices = (
        f"attention {result.get('attention', 'sdpa')}"
        f"{', compiled' if result.get('compile') else ''}"
        f"{', activation checkpointing' if result.get('activation_checkpointing') else ''}"
        f"{', fused AdamW' if result.get('fused_adamw') else ''}"
    )
    lines = [
        (
            f"VAR d{result['depth']} ({result['params'] / 1e6:.1f}M params), batch {result['batch']}, {device}, "
            f"{dtype}, {choices}"
        ),
        f"  device: {result.get('device_name', device)}",
        (
            f"  train step (forward, backward, clip, AdamW): {result['ms_per_image']:.2f} ms/image, "
            f"{result['images_per_second']:.2f} images/s"
        ),
        (
            f"  steady-state step: {1000 * result['seconds_per_step']:.1f} ms wall, "
            f"{1000 * result['cpu_seconds_per_step']:.1f} ms CPU "
            f"(set-up and warm-up before it: {result['set_up_seconds']:.1f} s)"
        ),
        f"  exact FLOPs/image (training): {result['flops_per_image']:.4e}; 6NL: {result['flops_per_image_6nl']:.4e}",
        (
            f"  achieved: {result['achieved_flops'] / 1e12:.3f} TFLOP/s exact "
            f"({result['achieved_flops_6nl'] / 1e12:.3f} TFLOP/s by 6NL)"
        ),
    ]
    if "peak_memory_bytes" in result:
        lines.append(f"  peak memory allocated: {result['peak_memory_bytes'] / 1e9:.2f} GB")
    if "fraction_of_peak" in result:
        lines.append(
            f"  fraction of bf16 peak ({result['peak_flops'] / 1e12:.0f} TFLOP/s): "
            f"{100 * result['fraction_of_peak']:.1f}%"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depth", type=int, required=True, help="VAR depth (width 64*depth)")
    parser.add_argument("--batch", type=int, default=4, help="images per step (the micro-batch)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--image-size", type=int, default=256, choices=(256, 512))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model first")
    parser.add_argument(
        "--attention", default="sdpa", choices=ATTENTION_KERNELS, help="attention kernel of the training forward"
    )
    parser.add_argument(
        "--activation-checkpointing", action="store_true", help="recompute each transformer block in the backward"
    )
    parser.add_argument(
        "--fused-adamw",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch's fused AdamW kernel (default: on CUDA only)",
    )
    parser.add_argument(
        "--save",
        type=Path,
        default=None,
        metavar="FILE",
        help="add (or update) this measurement in a throughput file (JSON)",
    )


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = benchmark(
        depth=args.depth,
        batch=args.batch,
        device=args.device,
        dtype=args.dtype,
        steps=args.steps,
        warmup=args.warmup,
        image_size=args.image_size,
        compile=args.compile,
        attention=args.attention,
        activation_checkpointing=args.activation_checkpointing,
        fused_adamw=args.fused_adamw,
    )
    print(format_result(result, args.device, args.dtype))
    if args.save is not None:
        throughput.save_record(args.save, throughput_record(result))
        print(f"  saved to {args.save}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `bench` subcommand to a CLI's subparsers (handler: `run`)."""
    parser = subparsers.add_parser(
        "bench",
        help="time a VAR training step and report FLOP/s",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m var_model.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
