"""One training step: a rank's share of the global batch in micro-batches, then one update.

Shape legend: B the rank's share of the global batch, b one micro-batch, L tokens, V codes.

Exact accumulation: the update equals the one of the whole global batch in one pass. The
full-batch loss is the mean over all B_global x L tokens. Each micro-batch's loss is its
token-loss sum divided by the tokens of the rank's share (B x L), so that the gradients
accumulated over a rank's micro-batches are the gradient of its share's mean; DDP (and FSDP's
reduce-scatter) then average over the W ranks' equal shares, which is the global mean.
Gradients are reduced over ranks once per step: on the last micro-batch.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from var_model.training.batches import teacher_forcing_batch
from var_model.training.evaluation import token_losses
from var_model.training.parallel import clip_gradients, gradient_sync
from var_model.training.setup import TrialParts


def train_step(
    parts: TrialParts, indices_BL: torch.Tensor, label_B: torch.Tensor, grad_clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer update from this rank's share (on the device). Returns the share's mean
    token loss and error as float64 tensors on the device (no host sync)."""
    plan = parts.micro_batches
    tokens = indices_BL.shape[0] * indices_BL.shape[1]
    loss_sum = torch.zeros((), dtype=torch.float64, device=indices_BL.device)
    error_sum = torch.zeros((), dtype=torch.float64, device=indices_BL.device)
    parts.optimizer.zero_grad(set_to_none=True)
    micro_batches = zip(indices_BL.split(plan.size), label_B.split(plan.size), strict=True)
    for number, (indices_bL, label_b) in enumerate(micro_batches):
        with gradient_sync(parts.model, enabled=number == plan.steps - 1):
            loss, error = _forward_backward(parts, indices_bL, label_b, tokens)
        loss_sum += loss.double()
        error_sum += error.double()
    _update(parts, grad_clip)
    return loss_sum, error_sum


def _forward_backward(
    parts: TrialParts, indices_bL: torch.Tensor, label_b: torch.Tensor, tokens: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward of this micro-batch's share of the mean loss; (that share, the error's share)."""
    x_bLC = teacher_forcing_batch(parts.vqvae, indices_bL)
    autocast = (
        torch.autocast(device_type=indices_bL.device.type, dtype=parts.autocast_dtype)
        if parts.autocast_dtype is not None
        else nullcontext()
    )
    with autocast:
        logits_bLV = parts.model(label_b, x_bLC)
    loss_bL, error_bL = token_losses(logits_bLV, indices_bL)
    loss = loss_bL.sum() / tokens
    if parts.scaler is not None:
        parts.scaler.scale(loss).backward()
    else:
        loss.backward()
    return loss.detach(), error_bL.sum() / tokens


def _update(parts: TrialParts, grad_clip: float) -> None:
    if parts.scaler is not None:
        parts.scaler.unscale_(parts.optimizer)  # clip the true gradients, not scaled ones
    if grad_clip > 0:
        clip_gradients(parts.var.parameters(), grad_clip)
    if parts.scaler is not None:
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        parts.optimizer.step()
