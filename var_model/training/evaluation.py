"""Held-out evaluation of a VAR on the cached test tokens.

Metrics (the MLflow schema's names): test_loss_avg (cross-entropy over all tokens, uniform
per token, as the training loss), test_loss_last (the last scale), test_error_avg /
test_error_last (token error rate = 1 - top-1 accuracy), test_loss_scale_KK and
test_error_scale_KK per scale. The model runs in eval mode: class dropout and drop-path off.
Under torchrun every rank scores a strided share of the rows and the sums are reduced.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from var_model.training.batches import teacher_forcing_batch
from var_model.training.distributed import DistributedContext
from var_model.var import scale_ids
from var_model.vqvae import VQVAE


def token_losses(logits_BLV: torch.Tensor, target_BL: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy (B, L), top-1 error as float (B, L)), in float32."""
    B, L, V = logits_BLV.shape
    # flat (B*L, V) rows: cross-entropy over a transposed (B, V, L) view is ~5x slower on CPU
    loss_BL = F.cross_entropy(logits_BLV.float().reshape(B * L, V), target_BL.reshape(B * L), reduction="none").view(
        B, L
    )
    error_BL = (logits_BLV.argmax(dim=-1) != target_BL).float()
    return loss_BL, error_BL


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    vqvae: VQVAE,
    indices: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    context: DistributedContext,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    device = context.device
    patch_nums = vqvae.config.patch_nums
    scale_of_token = scale_ids(patch_nums).to(device)
    num_scales = len(patch_nums)
    # float64 sums: a test set of 50,000 x 680 tokens must not lose digits
    loss_sum_K = torch.zeros(num_scales, dtype=torch.float64, device=device)
    error_sum_K = torch.zeros(num_scales, dtype=torch.float64, device=device)
    count_K = torch.zeros(num_scales, dtype=torch.float64, device=device)
    rows = np.arange(context.rank, len(indices), context.world_size)
    was_training = model.training
    model.eval()
    autocast = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    )
    try:
        for start in range(0, len(rows), batch_size):
            chosen = rows[start : start + batch_size]
            indices_BL = torch.from_numpy(np.asarray(indices[chosen], dtype=np.int64)).to(device)
            label_B = torch.from_numpy(np.asarray(labels[chosen], dtype=np.int64)).to(device)
            x_BLC = teacher_forcing_batch(vqvae, indices_BL)
            with autocast:
                logits_BLV = model(label_B, x_BLC)
            loss_BL, error_BL = token_losses(logits_BLV, indices_BL)
            loss_sum_K.index_add_(0, scale_of_token, loss_BL.sum(0).double())
            error_sum_K.index_add_(0, scale_of_token, error_BL.sum(0).double())
            count_K.index_add_(0, scale_of_token, torch.full_like(scale_of_token, len(chosen), dtype=torch.float64))
    finally:
        model.train(was_training)
    for tensor in (loss_sum_K, error_sum_K, count_K):
        context.all_reduce_sum(tensor)
    loss_K, error_K, count_K = loss_sum_K.cpu(), error_sum_K.cpu(), count_K.cpu()
    metrics = {
        "test_loss_avg": float(loss_K.sum() / count_K.sum()),
        "test_loss_last": float(loss_K[-1] / count_K[-1]),
        "test_error_avg": float(error_K.sum() / count_K.sum()),
        "test_error_last": float(error_K[-1] / count_K[-1]),
    }
    for k in range(num_scales):
        metrics[f"test_loss_scale_{k:02d}"] = float(loss_K[k] / count_K[k])
    for k in range(num_scales):
        metrics[f"test_error_scale_{k:02d}"] = float(error_K[k] / count_K[k])
    return metrics
