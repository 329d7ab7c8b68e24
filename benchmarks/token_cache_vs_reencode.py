"""Training throughput from the token cache vs re-encoding every batch with the frozen VQVAE.

The released VAR trainer encodes every image with the frozen tokenizer at every step; this
workbench tokenises once. Both paths below run the same trial (same VAR, batch, optimiser):

  cache     cached indices -> teacher_forcing_input -> VAR forward/backward/step
  reencode  images -> vqvae.encode_indices -> teacher_forcing_input -> VAR forward/backward/step

It also times the teacher-forcing step alone, to decide whether caching the VAR's float
inputs (L x Cvae floats per image instead of L small ints) would be worth its disk.

    python benchmarks/token_cache_vs_reencode.py var_model/training/examples/tiny_trial.yaml \
        --depths 2 4 --steps 20
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from var_model.data.config import DataConfig
from var_model.data.source import ImageSource, images_to_model_input
from var_model.training.batches import teacher_forcing_batch
from var_model.training.config import TrialConfig
from var_model.training.distributed import DistributedContext, resolve_device
from var_model.training.evaluation import token_losses
from var_model.training.setup import build_trial


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # CUDA runs asynchronously: time finished work only


def _train_step(parts, label_B: torch.Tensor, indices_BL: torch.Tensor, x_BLC: torch.Tensor) -> None:
    autocast = (
        torch.autocast(device_type=indices_BL.device.type, dtype=parts.autocast_dtype)
        if parts.autocast_dtype is not None
        else torch.autocast("cpu", enabled=False)
    )
    with autocast:
        logits_BLV = parts.model(label_B, x_BLC)
    loss = token_losses(logits_BLV, indices_BL)[0].mean()
    parts.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parts.var.parameters(), 2.0)
    parts.optimizer.step()


def measure(config: TrialConfig, steps: int, warmup: int) -> dict[str, float]:
    device = resolve_device(config.device)
    parts = build_trial(config, DistributedContext.single(device), verify_cache=False)
    data = DataConfig.from_dict(
        parts.cache.manifest["data"]
        | {
            key: value
            for key, value in dataclasses.asdict(DataConfig()).items()
            if key not in parts.cache.manifest["data"] and key != "kind"
        }
    )
    source = ImageSource(data)
    generator = np.random.default_rng(0)
    batch = config.batch_size

    def cached_step() -> None:
        indices_BL, label_B = parts.batches.next_batch()
        indices_BL, label_B = indices_BL.to(device), label_B.to(device)
        _train_step(parts, label_B, indices_BL, teacher_forcing_batch(parts.vqvae, indices_BL))

    def reencode_step() -> None:
        images_NHWC, labels = source.random_batch("train", batch, generator)
        with torch.no_grad():
            scale_indices = parts.vqvae.encode_indices(images_to_model_input(images_NHWC, device))
        indices_BL = torch.cat(scale_indices, dim=1)
        label_B = torch.from_numpy(labels).to(device)
        x_BLC = parts.vqvae.teacher_forcing_input(scale_indices)
        _train_step(parts, label_B, indices_BL, x_BLC)

    def teacher_forcing_only() -> None:
        indices_BL, _ = parts.batches.next_batch()
        teacher_forcing_batch(parts.vqvae, indices_BL.to(device))

    source.arrays("train")  # generate the synthetic images before timing
    results = {}
    for name, step in (("cache", cached_step), ("reencode", reencode_step), ("teacher_forcing", teacher_forcing_only)):
        for _ in range(warmup):
            step()
        _synchronise(device)
        started = time.perf_counter()
        for _ in range(steps):
            step()
        _synchronise(device)
        results[name] = steps * batch / (time.perf_counter() - started)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trial", help="a TrialConfig YAML whose token cache exists")
    parser.add_argument("--depths", type=int, nargs="+", default=None, help="VAR depths (default: the trial's)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default=None, help="override the trial's device")
    parser.add_argument("--threads", type=int, default=None, help="override the trial's torch threads")
    args = parser.parse_args()
    config = TrialConfig.from_yaml(args.trial)
    if args.device:
        config = config.replace(device=args.device)
    if args.threads is not None:
        config = config.replace(threads=args.threads)
    if config.threads:
        torch.set_num_threads(config.threads)
    depths = args.depths or [config.model["depth"]]
    print(
        f"batch {config.batch_size}, device {config.device}, threads {torch.get_num_threads()}, "
        f"{args.steps} timed steps after {args.warmup} warm-up steps"
    )
    print(
        f"{'depth':>5} {'width':>6} {'cache img/s':>12} {'re-encode img/s':>16} {'ratio':>7} "
        f"{'teacher-forcing img/s':>22}"
    )
    for depth in depths:
        model = dict(config.model, depth=depth)
        if "width" in config.model:
            model["width"] = config.model["width"] * depth // config.model["depth"]
        if "num_heads" in config.model:
            model["num_heads"] = max(1, config.model["num_heads"] * depth // config.model["depth"])
        trial = config.replace(model=model, output_dir=config.output_dir + "-bench")
        result = measure(trial, args.steps, args.warmup)
        print(
            f"{depth:>5} {model.get('width', 64 * depth):>6} {result['cache']:>12.1f} "
            f"{result['reencode']:>16.1f} {result['cache'] / result['reencode']:>6.2f}x "
            f"{result['teacher_forcing']:>22.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
