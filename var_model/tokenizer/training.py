"""Training the multi-scale VQVAE on a study's data (the VAR release has no such script).

Loss = mse(reconstruction, image) + quantizer_weight * quantizer loss (per scale
beta*||sg(f_hat) - f||^2 + ||f_hat - sg(f)||^2, from `VQVAE.forward`); the spec allows L2
without the paper's LPIPS and GAN terms for a small-data workbench.

Dead codes (the known failure: a shared codebook collapses onto a few entries, worst at the
coarse scales) are fought twice. Before the first step the whole codebook is initialised from
residual vectors of a data batch (`codebook_init_from_data`; a random codebook far from the
encoder's outputs collapses within tens of steps on this data). Then every `dead_code_every`
steps, an entry whose hit-rate EMA over all
scales fell below `dead_code_threshold` is replaced by a randomly chosen residual vector that
the quantizer actually sees at some scale, and its Adam moments are zeroed.

Reported: test reconstruction MSE (images in [-1, 1]) and PSNR, and the fraction of the
codebook used at each scale on the test images.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from var_model.data.source import ImageSource, images_to_model_input
from var_model.errors import ConfigError, DivergenceError
from var_model.vqvae import VQVAE


@dataclass(frozen=True)
class TokenizerTrainingConfig:
    """steps, batch_size, lr (Adam, betas (0.9, 0.95)), grad_clip (0 = off), seed,
    quantizer_weight, codebook_init_from_data, dead_code_every (0 = never re-seed),
    dead_code_threshold (hit-rate EMA), log_every, eval_images (test images for the report)."""

    steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-4
    grad_clip: float = 1.0
    seed: int = 0
    quantizer_weight: float = 1.0
    codebook_init_from_data: bool = True
    dead_code_every: int = 100
    dead_code_threshold: float = 0.01
    log_every: int = 100
    eval_images: int = 1024

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "eval_images"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"tokenizer {name} is {value!r}; it must be an integer >= 1")
        for name in ("dead_code_every", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"tokenizer {name} is {value!r}; it must be an integer >= 0")
        for name in ("lr", "quantizer_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ConfigError(f"tokenizer {name} is {value!r}; it must be a positive number")
        for name in ("grad_clip", "dead_code_threshold"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ConfigError(f"tokenizer {name} is {value!r}; it must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TokenizerReport:
    """Test reconstruction MSE and PSNR, per-scale codebook usage (fraction of the codebook
    hit on the test images), training steps, re-seeded codes, seconds, and the log."""

    reconstruction_mse: float
    psnr: float
    codebook_usage: tuple[float, ...]
    codebook_usage_any_scale: float
    steps: int = 0
    reseeded_codes: int = 0
    seconds: float = 0.0
    history: tuple[dict[str, float], ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["codebook_usage"] = list(self.codebook_usage)
        values["history"] = list(self.history)
        return values


def train_tokenizer(
    vqvae: VQVAE,
    source: ImageSource,
    config: TokenizerTrainingConfig,
    device: torch.device | str = "cpu",
    log: Callable[[dict[str, float]], None] | None = None,
) -> TokenizerReport:
    """Train `vqvae` in place; return its report on the test split. Raises DivergenceError
    on a non-finite loss (a tokenizer stage has nothing to salvage from a NaN tokenizer)."""
    device = torch.device(device)
    torch.manual_seed(config.seed)
    generator = np.random.default_rng(config.seed)
    vqvae.to(device).train()
    optimizer = torch.optim.Adam(vqvae.parameters(), lr=config.lr, betas=(0.9, 0.95))
    history: list[dict[str, float]] = []
    reseeded = 0
    started = time.perf_counter()
    if config.codebook_init_from_data:
        # every entry counts as dead: all are drawn from this batch's residual vectors
        vqvae.quantize.ema_vocab_hit_SV.zero_()
        images_NHWC, _ = source.random_batch("train", max(config.batch_size, 64), generator)
        reseed_dead_codes(
            vqvae, images_to_model_input(images_NHWC, device), optimizer, config.dead_code_threshold, generator
        )
    for step in range(1, config.steps + 1):
        images_NHWC, _ = source.random_batch("train", config.batch_size, generator)
        image_B3HW = images_to_model_input(images_NHWC, device)
        reconstruction, quantizer_loss, usage_K = vqvae(image_B3HW)
        reconstruction_loss = F.mse_loss(reconstruction, image_B3HW)
        loss = reconstruction_loss + config.quantizer_weight * quantizer_loss
        if not torch.isfinite(loss):
            raise DivergenceError(f"tokenizer loss became {loss.item()} at step {step}; lower lr ({config.lr})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(vqvae.parameters(), config.grad_clip)
        optimizer.step()
        if config.dead_code_every and step % config.dead_code_every == 0 and step < config.steps:
            reseeded += reseed_dead_codes(vqvae, image_B3HW, optimizer, config.dead_code_threshold, generator)
        if step % config.log_every == 0 or step == config.steps:
            record = {
                "step": float(step),
                "reconstruction_mse": reconstruction_loss.item(),
                "quantizer_loss": quantizer_loss.item(),
                "reseeded_codes": float(reseeded),
                **{f"batch_usage_scale_{k:02d}": float(u) for k, u in enumerate(usage_K.tolist())},
            }
            history.append(record)
            if log is not None:
                log(record)
    evaluation = evaluate_tokenizer(vqvae, source, config.eval_images, config.batch_size, device)
    return TokenizerReport(
        **evaluation,
        steps=config.steps,
        reseeded_codes=reseeded,
        seconds=time.perf_counter() - started,
        history=tuple(history),
    )


@torch.no_grad()
def reseed_dead_codes(
    vqvae: VQVAE,
    image_B3HW: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    threshold: float,
    generator: np.random.Generator,
) -> int:
    """Replace codebook entries whose hit-rate EMA (summed over scales) is below `threshold`
    with residual vectors of this batch; returns how many were replaced."""
    quantizer = vqvae.quantize
    dead_V = quantizer.ema_vocab_hit_SV.sum(0) < threshold
    dead_count = int(dead_V.sum())
    if dead_count == 0:
        return 0
    f_BChw = vqvae.encode_latent(image_B3HW)
    scale_indices = quantizer.latent_to_indices(f_BChw)
    channels = f_BChw.shape[1]
    candidates = []
    for k, pn in enumerate(quantizer.patch_nums):
        # the residual that scale k quantizes: f minus what the coarser scales explained
        residual = f_BChw if k == 0 else f_BChw - quantizer.indices_to_latent(scale_indices[:k])
        if pn != f_BChw.shape[-1]:
            residual = F.interpolate(residual, size=(pn, pn), mode="area")
        candidates.append(residual.permute(0, 2, 3, 1).reshape(-1, channels))
    pool_NC = torch.cat(candidates)
    chosen = torch.from_numpy(generator.integers(0, len(pool_NC), size=dead_count)).to(pool_NC.device)
    weight_VC = quantizer.embedding.weight
    dead_positions = dead_V.nonzero().squeeze(1)
    weight_VC[dead_positions] = pool_NC[chosen].to(weight_VC.dtype)
    # a fresh code gets a grace period before it can be judged dead again
    quantizer.ema_vocab_hit_SV[:, dead_positions] = threshold * 10
    state = optimizer.state.get(weight_VC, {})
    for moment in ("exp_avg", "exp_avg_sq"):
        if moment in state:
            state[moment][dead_positions] = 0
    return dead_count


@torch.no_grad()
def evaluate_tokenizer(
    vqvae: VQVAE, source: ImageSource, max_images: int, batch_size: int, device: torch.device | str
) -> dict[str, Any]:
    """Reconstruction through the full encode -> indices -> decode path on test images."""
    vqvae.eval()
    codebook_size = vqvae.config.codebook_size
    hits_KV = torch.zeros(len(vqvae.config.patch_nums), codebook_size, dtype=torch.bool)
    squared_error, pixels, seen = 0.0, 0, 0
    for images_NHWC, _ in source.iterate("test", batch_size):
        images_NHWC = images_NHWC[: max_images - seen]
        image_B3HW = images_to_model_input(images_NHWC, device)
        scale_indices = vqvae.encode_indices(image_B3HW)
        reconstruction = vqvae.decode_indices(scale_indices)
        squared_error += float((reconstruction - image_B3HW).square().sum())
        pixels += image_B3HW.numel()
        for k, idx_Bl in enumerate(scale_indices):
            hits_KV[k, idx_Bl.reshape(-1).cpu()] = True
        seen += len(images_NHWC)
        if seen >= max_images:
            break
    mse = squared_error / pixels
    # images span [-1, 1]: peak-to-peak 2, so PSNR = 10 log10(4 / mse)
    return {
        "reconstruction_mse": mse,
        "psnr": 10 * math.log10(4.0 / max(mse, 1e-12)),
        "codebook_usage": tuple(float(row.float().mean()) for row in hits_KV),
        "codebook_usage_any_scale": float(hits_KV.any(0).float().mean()),
    }
