"""Micro-benchmark of one VAR training step (forward + backward), with achieved FLOP/s.

Tiny CPU run first:
    python -m var_model.bench --depth 2 --batch 2 --steps 2
GPU, the released d16 in bf16:
    python -m var_model.bench --depth 16 --batch 32 --device cuda --dtype bfloat16 --steps 10

FLOP/s use the exact training count of `var_model.counting.flops_per_image` (matmuls only,
block-causal attention pairs only, AdaLN once per image); the 6*N*L figure is printed for
comparison. This is a measurement command, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

from var_model import counting
from var_model.config import PATCH_NUMS_256, PATCH_NUMS_512, VARConfig
from var_model.errors import ConfigError
from var_model.var import VAR

# dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from the vendors' data sheets
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def known_peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAK_BF16_TFLOPS.items():
        if key in name:
            return peak
    return None


def benchmark(depth: int, batch: int = 4, device: str = "cpu", dtype: str = "float32", steps: int = 5,
              warmup: int = 2, image_size: int = 256, seed: int = 0, compile: bool = False) -> dict[str, float]:
    """Time `steps` forward+backward passes of a VAR of this depth on random tokens."""
    if dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"dtype={dtype!r} is not allowed: float32 or bfloat16")
    if image_size not in (256, 512):
        raise ConfigError(f"image_size={image_size!r} is not allowed: 256 or 512")
    if steps < 1 or batch < 1:
        raise ConfigError(f"steps={steps}, batch={batch}: both must be >= 1")
    torch_device = torch.device(device)
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but CUDA is not available here")
    torch.manual_seed(seed)
    config = VARConfig(depth=depth, patch_nums=PATCH_NUMS_256 if image_size == 256 else PATCH_NUMS_512)
    var = VAR(config).to(torch_device).train()
    model = torch.compile(var) if compile else var
    L, V = config.sequence_length, config.codebook_size
    x_BLC = torch.randn(batch, L - config.first_length, config.latent_channels, device=torch_device)
    target_BL = torch.randint(0, V, (batch, L), device=torch_device)
    label_B = torch.randint(0, config.num_classes, (batch,), device=torch_device)
    autocast = (torch.autocast(device_type=torch_device.type, dtype=torch.bfloat16)
                if dtype == "bfloat16" else contextlib.nullcontext())

    def step() -> None:
        with autocast:
            logits_BLV = model(label_B, x_BLC)
        loss = F.cross_entropy(logits_BLV.view(-1, V), target_BL.view(-1))
        loss.backward()
        var.zero_grad(set_to_none=True)

    def synchronize() -> None:
        if torch_device.type == "cuda":
            torch.cuda.synchronize(torch_device)  # kernels are asynchronous: wait before reading the clock

    for _ in range(warmup):
        step()
    synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    seconds = (time.perf_counter() - start) / steps
    exact = counting.flops_per_image(config, training=True)
    six_nl = counting.six_n_l(config)
    images_per_second = batch / seconds
    result = dict(depth=depth, batch=batch, params=counting.param_counts(config)["total"],
                  ms_per_image=1000 * seconds / batch, images_per_second=images_per_second,
                  flops_per_image=exact, flops_per_image_6nl=six_nl,
                  achieved_flops=exact * images_per_second, achieved_flops_6nl=six_nl * images_per_second)
    peak = known_peak_tflops(torch_device)
    if peak is not None and dtype == "bfloat16":
        result["peak_flops"] = peak * 1e12
        result["fraction_of_peak"] = result["achieved_flops"] / result["peak_flops"]
    return result


def format_result(result: dict[str, float], device: str, dtype: str) -> str:
    lines = [
        f"VAR d{result['depth']} ({result['params'] / 1e6:.1f}M params), batch {result['batch']}, {device}, {dtype}",
        f"  forward+backward: {result['ms_per_image']:.2f} ms/image, {result['images_per_second']:.2f} images/s",
        f"  exact FLOPs/image (training): {result['flops_per_image']:.4e}; 6NL: {result['flops_per_image_6nl']:.4e}",
        f"  achieved: {result['achieved_flops'] / 1e12:.3f} TFLOP/s exact "
        f"({result['achieved_flops_6nl'] / 1e12:.3f} TFLOP/s by 6NL)",
    ]
    if "fraction_of_peak" in result:
        lines.append(f"  fraction of bf16 peak ({result['peak_flops'] / 1e12:.0f} TFLOP/s): "
                     f"{100 * result['fraction_of_peak']:.1f}%")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depth", type=int, required=True, help="VAR depth (width 64*depth)")
    parser.add_argument("--batch", type=int, default=4, help="images per step")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--image-size", type=int, default=256, choices=(256, 512))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model first")


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = benchmark(depth=args.depth, batch=args.batch, device=args.device, dtype=args.dtype,
                       steps=args.steps, warmup=args.warmup, image_size=args.image_size,
                       compile=args.compile)
    print(format_result(result, args.device, args.dtype))
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `bench` subcommand to a CLI's subparsers (handler: `run`)."""
    parser = subparsers.add_parser("bench", help="time a VAR training step and report FLOP/s",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(handler=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m var_model.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
