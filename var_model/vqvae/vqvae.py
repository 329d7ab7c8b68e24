"""The multi-scale VQVAE: encoder -> quant_conv -> residual quantizer -> post_quant_conv -> decoder.

Shape legend: B batch, H/W image side, C latent channels (Cvae), h/w latent side,
l = pn*pn tokens of one scale, L total tokens, K scales.
Images live in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from var_model.config import VQVAEConfig
from var_model.errors import DataError
from var_model.vqvae.convnets import Decoder, Encoder
from var_model.vqvae.quantizer import MultiScaleQuantizer


class VQVAE(nn.Module):
    def __init__(self, config: VQVAEConfig | None = None):
        super().__init__()
        self.config = config if config is not None else VQVAEConfig()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.quantize = MultiScaleQuantizer(self.config)
        self.quant_conv = nn.Conv2d(self.config.latent_channels, self.config.latent_channels, 3, stride=1, padding=1)
        self.post_quant_conv = nn.Conv2d(
            self.config.latent_channels, self.config.latent_channels, 3, stride=1, padding=1
        )

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return self.config.patch_nums

    # ---------------------------------------------------------------- input checks
    def check_images(self, img_B3HW: torch.Tensor) -> None:
        size, channels = self.config.image_size, self.config.in_channels
        if not isinstance(img_B3HW, torch.Tensor) or img_B3HW.ndim != 4 or img_B3HW.shape[1] != channels:
            shape = tuple(img_B3HW.shape) if isinstance(img_B3HW, torch.Tensor) else type(img_B3HW).__name__
            raise DataError(f"images must be a (B, {channels}, {size}, {size}) tensor in [-1, 1]; got {shape}")
        if tuple(img_B3HW.shape[2:]) != (size, size):
            raise DataError(
                f"image size {tuple(img_B3HW.shape[2:])} does not match this VQVAE: patch_nums "
                f"{self.config.patch_nums} end at latent side {self.config.latent_size}, which needs "
                f"{size}x{size} images (image_size={size})"
            )

    def check_indices(self, indices: list[torch.Tensor], need: int, sync: bool = True) -> None:
        """Raise DataError unless `indices` holds at least `need` token maps (B, pn*pn) in [0, V).

        Reading the values is a host sync on an accelerator; with sync=False (the per-step
        teacher-forcing input) accelerator indices get one asynchronous device assert
        instead. CPU tensors are always checked exactly."""
        if not isinstance(indices, (list, tuple)) or len(indices) < need or len(indices) > len(self.patch_nums):
            count = len(indices) if isinstance(indices, (list, tuple)) else type(indices).__name__
            raise DataError(
                f"expected a list of {need} index tensors (one per scale of {self.patch_nums}); got {count}"
            )
        V = self.config.codebook_size
        for k, idx_Bl in enumerate(indices):
            pn = self.patch_nums[k]
            if (
                not isinstance(idx_Bl, torch.Tensor)
                or idx_Bl.ndim != 2
                or idx_Bl.shape[1] != pn * pn
                or idx_Bl.dtype not in (torch.int64, torch.int32)
            ):
                shape = tuple(idx_Bl.shape) if isinstance(idx_Bl, torch.Tensor) else type(idx_Bl).__name__
                raise DataError(
                    f"indices[{k}] must be an integer tensor of shape (B, {pn * pn}); "
                    f"got {shape} {getattr(idx_Bl, 'dtype', '')}"
                )
        if not sync and indices[0].device.type != "cpu":
            bad = torch.stack([((idx_Bl < 0) | (idx_Bl >= V)).any() for idx_Bl in indices]).any()
            torch._assert_async(~bad, f"token indices outside [0, {V})")
            return
        for k, idx_Bl in enumerate(indices):
            if idx_Bl.numel() and bool(((idx_Bl < 0) | (idx_Bl >= V)).any()):  # host sync on a GPU
                raise DataError(f"indices[{k}] has values outside [0, {V})")

    # ---------------------------------------------------------------- tokenizer encoding
    @torch.no_grad()
    def encode_latent(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        self.check_images(img_B3HW)
        return self.quant_conv(self.encoder(img_B3HW))

    @torch.no_grad()
    def encode_indices(self, img_B3HW: torch.Tensor) -> list[torch.Tensor]:
        """Images in [-1, 1] -> one LongTensor (B, pn*pn) per scale."""
        return self.quantize.latent_to_indices(self.encode_latent(img_B3HW))

    # ---------------------------------------------------------------- VAR training
    @torch.no_grad()  # the tokenizer is frozen while the VAR trains: its input is data
    def teacher_forcing_input(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """Token maps of all K scales -> VAR input (B, L - pn0^2, Cvae) for scales 1..K-1."""
        self.check_indices(indices, need=len(self.patch_nums) - 1, sync=False)  # per training step
        return self.quantize.teacher_forcing_input(indices)

    # ---------------------------------------------------------------- decoding / inference
    def latent_to_image(self, f_hat_BChw: torch.Tensor) -> torch.Tensor:
        """f_hat -> image in [-1, 1] (clamped)."""
        return self.decoder(self.post_quant_conv(f_hat_BChw)).clamp(-1, 1)

    @torch.no_grad()
    def decode_indices(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """Token maps of all K scales -> images (B, 3, H, W) in [-1, 1]."""
        self.check_indices(indices, need=len(self.patch_nums))
        return self.latent_to_image(self.quantize.indices_to_latent(indices))

    # ---------------------------------------------------------------- tokenizer training
    def forward(self, img_B3HW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokenizer training step: (reconstruction, quantizer loss, code usage (K,)).

        The reconstruction is not clamped here (clamping would zero its gradient outside
        [-1, 1]); `latent_to_image` clamps at inference.

        The reconstruction's gradient reaches the encoder through a straight-through
        estimator; the quantizer loss (commitment beta) trains the codebook and phis.
        Code usage k is the fraction of the codebook hit at scale k in this batch.
        """
        self.check_images(img_B3HW)
        f_BChw = self.quant_conv(self.encoder(img_B3HW))
        f_hat_BChw, quantizer_loss, usage_K = self.quantize(f_BChw)
        reconstruction = self.decoder(self.post_quant_conv(f_hat_BChw))
        return reconstruction, quantizer_loss, usage_K
