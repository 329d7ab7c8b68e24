"""Residual multi-scale vector quantizer with one codebook shared by all scales (docs/MODEL.md §1).

Shape legend: B batch, C latent channels (Cvae), H/W latent side (last patch_num),
pn side of one scale, l = pn*pn tokens of one scale, V codebook size, K number of scales.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from var_model.config import VQVAEConfig


def _float32_without_autocast(method):
    """Run a quantizer method with autocast off, as the release does: a bf16 phi conv or
    resize would change the residuals, hence the codes picked, and the loss. Meta tensors
    (shape-only runs) have no autocast backend."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        device = self.embedding.weight.device
        region = (
            contextlib.nullcontext()
            if device.type == "meta"
            else torch.autocast(device_type=device.type, enabled=False)
        )
        with region:
            return method(self, *args, **kwargs)

    return wrapper


class Phi(nn.Conv2d):
    """phi(h) = (1 - r) * h + r * conv3x3(h), r = quant_resi (0.5 in the release)."""

    def __init__(self, channels: int, quant_resi: float):
        super().__init__(channels, channels, kernel_size=3, stride=1, padding=1)
        self.resi_ratio = quant_resi

    def forward(self, h_BChw: torch.Tensor) -> torch.Tensor:
        return h_BChw.mul(1 - self.resi_ratio) + super().forward(h_BChw).mul_(self.resi_ratio)


def phi_ticks(count: int) -> np.ndarray:
    """Positions in [0, 1] that own each of `count` partially shared phis.

    4 phis sit at linspace(1/12, 11/12, 4) (the release); other counts at the centres of
    `count` equal bins.
    """
    if count == 4:
        return np.linspace(1 / 12, 11 / 12, 4)
    return np.linspace(1 / (2 * count), 1 - 1 / (2 * count), count)


def phi_index_map(num_scales: int, share_quant_resi: int) -> list[int]:
    """Which phi each scale uses; [0, 0, 1, 1, 1, 2, 2, 3, 3, 3] for 10 scales and 4 phis."""
    if share_quant_resi == 0:
        return list(range(num_scales))
    if share_quant_resi == 1:
        return [0] * num_scales
    ticks = phi_ticks(share_quant_resi)
    positions = [k / (num_scales - 1) if num_scales > 1 else 0.0 for k in range(num_scales)]
    return [int(np.argmin(np.abs(ticks - p))) for p in positions]


class _PhiList(nn.Module):
    """Holds the phis under the released key names for each sharing mode:
    `quant_resi.qresi_ls.i` (partially shared), `quant_resi.qresi` (shared),
    `quant_resi.i` (one per scale)."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.index_map = phi_index_map(config.num_scales, config.share_quant_resi)
        mode = config.share_quant_resi

        def make() -> nn.Module:
            # quant_resi == 0 means phi is the identity (and has no weights)
            if abs(config.quant_resi) < 1e-6:
                return nn.Identity()
            return Phi(config.latent_channels, config.quant_resi)

        self.mode = mode
        if mode == 1:
            self.qresi = make()
        elif mode == 0:
            for k in range(config.num_scales):
                self.add_module(str(k), make())
        else:
            self.qresi_ls = nn.ModuleList([make() for _ in range(mode)])

    def for_scale(self, scale_index: int) -> nn.Module:
        slot = self.index_map[scale_index]
        if self.mode == 1:
            return self.qresi
        if self.mode == 0:
            return getattr(self, str(slot))
        return self.qresi_ls[slot]


class MultiScaleQuantizer(nn.Module):
    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = config
        self.patch_nums = config.patch_nums
        self.codebook_size = config.codebook_size
        self.latent_channels = config.latent_channels
        self.beta = config.beta
        # EMA of per-scale code hits (a persistent buffer of the released checkpoint)
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(config.num_scales, config.codebook_size))
        self.quant_resi = _PhiList(config)
        self.embedding = nn.Embedding(config.codebook_size, config.latent_channels)

    def phi(self, scale_index: int, h_BChw: torch.Tensor) -> torch.Tensor:
        return self.quant_resi.for_scale(scale_index)(h_BChw)

    # ---------------------------------------------------------------- shared steps
    def nearest_code(self, z_NC: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook entry by squared L2 (no normalisation)."""
        weight_VC = self.embedding.weight
        # |z|^2 - 2 z.e + |e|^2, computed in float32 for stable argmin under autocast
        z_NC = z_NC.float()
        weight_VC = weight_VC.float()
        distance_NV = (
            z_NC.square().sum(1, keepdim=True) - 2.0 * z_NC @ weight_VC.T + weight_VC.square().sum(1).unsqueeze(0)
        )
        return distance_NV.argmin(dim=1)

    def _upsample_code(self, scale_index: int, idx_Bl: torch.Tensor, side: int) -> torch.Tensor:
        """embed(idx) at its scale, bicubic-upsampled to the latent side (not at the last scale)."""
        B, pn = idx_Bl.shape[0], self.patch_nums[scale_index]
        h_BCpp = self.embedding(idx_Bl).transpose(1, 2).reshape(B, self.latent_channels, pn, pn)
        if scale_index == len(self.patch_nums) - 1:
            return h_BCpp
        return F.interpolate(h_BCpp, size=(side, side), mode="bicubic")

    # ---------------------------------------------------------------- tokenizer encoding
    @torch.no_grad()
    @_float32_without_autocast
    def latent_to_indices(self, f_BChw: torch.Tensor) -> list[torch.Tensor]:
        """Residual quantization of a latent into K index maps, each (B, pn*pn)."""
        B, C, H, W = f_BChw.shape
        f_rest = f_BChw.detach().float().clone()
        indices: list[torch.Tensor] = []
        for k, pn in enumerate(self.patch_nums):
            z_BCpp = f_rest if k == len(self.patch_nums) - 1 else F.interpolate(f_rest, size=(pn, pn), mode="area")
            idx_Bl = self.nearest_code(z_BCpp.permute(0, 2, 3, 1).reshape(-1, C)).view(B, pn * pn)
            indices.append(idx_Bl)
            f_rest.sub_(self.phi(k, self._upsample_code(k, idx_Bl, H)))
        return indices

    @_float32_without_autocast
    def indices_to_latent(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """f_hat = sum over scales of phi_k(upsample(embed(idx_k))), shape (B, C, H, W)."""
        side = self.patch_nums[-1]
        f_hat = None
        for k, idx_Bl in enumerate(indices):
            h = self.phi(k, self._upsample_code(k, idx_Bl, side))
            f_hat = h if f_hat is None else f_hat + h
        return f_hat

    @_float32_without_autocast
    def teacher_forcing_input(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """VAR input for scales 1..K-1: area-downsampled partial sums of f_hat, (B, L - pn0^2, C)."""
        B, side = indices[0].shape[0], self.patch_nums[-1]
        f_hat = torch.zeros(
            B, self.latent_channels, side, side, device=indices[0].device, dtype=self.embedding.weight.dtype
        )
        pieces: list[torch.Tensor] = []
        for k in range(len(self.patch_nums) - 1):
            # the last scale is never an input: nothing is predicted after it
            f_hat = f_hat + self.phi(
                k,
                F.interpolate(
                    self.embedding(indices[k])
                    .transpose(1, 2)
                    .reshape(B, self.latent_channels, self.patch_nums[k], self.patch_nums[k]),
                    size=(side, side),
                    mode="bicubic",
                ),
            )
            pn_next = self.patch_nums[k + 1]
            pieces.append(F.interpolate(f_hat, size=(pn_next, pn_next), mode="area").flatten(2).transpose(1, 2))
        if not pieces:
            return torch.zeros(B, 0, self.latent_channels, device=indices[0].device)
        return torch.cat(pieces, dim=1)

    @_float32_without_autocast
    def next_autoregressive_input(
        self, scale_index: int, f_hat_BChw: torch.Tensor, h_BCpp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampling step: add scale k's codes to f_hat; return (f_hat, next scale's input map)."""
        last = len(self.patch_nums) - 1
        side = self.patch_nums[-1]
        f_hat_BChw, h_BCpp = f_hat_BChw.float(), h_BCpp.float()
        if scale_index == last:
            f_hat_BChw = f_hat_BChw + self.phi(scale_index, h_BCpp)
            return f_hat_BChw, f_hat_BChw
        f_hat_BChw = f_hat_BChw + self.phi(scale_index, F.interpolate(h_BCpp, size=(side, side), mode="bicubic"))
        pn_next = self.patch_nums[scale_index + 1]
        return f_hat_BChw, F.interpolate(f_hat_BChw, size=(pn_next, pn_next), mode="area")

    # ---------------------------------------------------------------- tokenizer training
    @_float32_without_autocast
    def forward(self, f_BChw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantize with a straight-through estimator.

        Returns (f_hat with straight-through gradient to f, quantizer loss, code usage (K,)):
        loss = mean over scales of beta*mse(f_hat.detach(), f) + mse(f_hat, f.detach());
        usage[k] = fraction of the V codes hit at scale k in this batch.
        """
        f_BChw = f_BChw.float()
        B, C, H, W = f_BChw.shape
        f_target = f_BChw.detach()
        f_rest = f_target.clone()
        f_hat = torch.zeros_like(f_target)
        loss = f_BChw.new_zeros(())
        usage = torch.zeros(len(self.patch_nums), device=f_BChw.device)
        for k, pn in enumerate(self.patch_nums):
            z_BCpp = f_rest if k == len(self.patch_nums) - 1 else F.interpolate(f_rest, size=(pn, pn), mode="area")
            idx_N = self.nearest_code(z_BCpp.permute(0, 2, 3, 1).reshape(-1, C))
            hits_V = torch.bincount(idx_N, minlength=self.codebook_size).float()
            usage[k] = (hits_V > 0).float().mean()
            if self.training:
                self.ema_vocab_hit_SV[k].mul_(0.9).add_(hits_V.mul(0.1))
            h = self.phi(k, self._upsample_code(k, idx_N.view(B, pn * pn), H))
            f_hat = f_hat + h
            f_rest = f_rest - h.detach()
            loss = loss + self.beta * F.mse_loss(f_hat.detach(), f_BChw) + F.mse_loss(f_hat, f_target)
        loss = loss / len(self.patch_nums)
        # straight-through: forward value f_hat, gradient flows to the encoder as identity
        f_hat_st = f_hat.detach() - f_target + f_BChw
        return f_hat_st, loss, usage
