"""The LDM "vq-f16" convolutional encoder and decoder used by VAR's tokenizer.

Module names follow the released checkpoint (`encoder.down.0.block.0.norm1.weight`, ...),
so the official state dict loads without renaming.
Shape legend: B batch, C channels, H/W height/width, h/w latent height/width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from var_model.config import GROUP_NORM_GROUPS, VQVAEConfig


def group_norm(channels: int, groups: int = GROUP_NORM_GROUPS) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x_BCHW, scale_factor=2, mode="nearest"))


class Downsample(nn.Module):
    """Asymmetric pad (right and bottom by one), then a 3x3 stride-2 conv without padding."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x_BCHW, (0, 1, 0, 1), mode="constant", value=0.0))


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float, groups: int = GROUP_NORM_GROUPS):
        super().__init__()
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = group_norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        # a 1x1 projection only where the channel count changes (as in the checkpoint)
        self.nin_shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        h_BCHW = self.conv1(F.silu(self.norm1(x_BCHW)))
        h_BCHW = self.conv2(self.dropout(F.silu(self.norm2(h_BCHW))))
        return self.nin_shortcut(x_BCHW) + h_BCHW


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, with a fused 1x1-conv qkv projection."""

    def __init__(self, channels: int, groups: int = GROUP_NORM_GROUPS):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x_BCHW.shape
        qkv_B3CN = self.qkv(self.norm(x_BCHW)).reshape(B, 3, C, H * W)
        # SDPA wants (B, heads, N, C); one head; default softmax scale 1/sqrt(C) as in LDM
        q_B1NC, k_B1NC, v_B1NC = (qkv_B3CN[:, i].transpose(1, 2).unsqueeze(1) for i in range(3))
        h_B1NC = F.scaled_dot_product_attention(q_B1NC, k_B1NC, v_B1NC)
        h_BCHW = h_B1NC.squeeze(1).transpose(1, 2).reshape(B, C, H, W)
        return x_BCHW + self.proj_out(h_BCHW)


class _Level(nn.Module):
    """One resolution level: `block` and `attn` lists plus an optional resampler (named as in LDM)."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _Middle(nn.Module):
    def __init__(self, channels: int, dropout: float, use_attention: bool, groups: int = GROUP_NORM_GROUPS):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout, groups)
        self.attn_1 = AttnBlock(channels, groups) if use_attention else nn.Identity()
        self.block_2 = ResnetBlock(channels, channels, dropout, groups)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x_BCHW)))


class Encoder(nn.Module):
    """Image (B, 3, H, W) in [-1, 1] -> latent (B, Cvae, h, w) with h = H / 2**(levels - 1)."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        ch, mult, levels = config.channels, config.channel_multipliers, len(config.channel_multipliers)
        self.conv_in = nn.Conv2d(config.in_channels, ch, kernel_size=3, stride=1, padding=1)
        in_mult = (1,) + tuple(mult)
        self.down = nn.ModuleList()
        block_out = ch
        for level in range(levels):
            stage = _Level()
            block_in, block_out = ch * in_mult[level], ch * mult[level]
            for _ in range(config.num_res_blocks):
                stage.block.append(ResnetBlock(block_in, block_out, config.dropout, config.norm_groups))
                block_in = block_out
                if level == levels - 1 and config.use_attention:
                    stage.attn.append(AttnBlock(block_out, config.norm_groups))
            if level != levels - 1:
                stage.downsample = Downsample(block_out)
            self.down.append(stage)
        self.mid = _Middle(block_out, config.dropout, config.use_mid_attention, config.norm_groups)
        self.norm_out = group_norm(block_out, config.norm_groups)
        self.conv_out = nn.Conv2d(block_out, config.latent_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(img_B3HW)
        for stage in self.down:
            for index, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[index](h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent (B, Cvae, h, w) -> image (B, 3, H, W); not clamped here (the VQVAE clamps)."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        ch, mult, levels = config.channels, config.channel_multipliers, len(config.channel_multipliers)
        block_in = ch * mult[-1]
        self.conv_in = nn.Conv2d(config.latent_channels, block_in, kernel_size=3, stride=1, padding=1)
        self.mid = _Middle(block_in, config.dropout, config.use_mid_attention, config.norm_groups)
        stages: list[_Level] = []
        # built from the deepest level up, stored by level index (up.0 is the full resolution)
        for level in reversed(range(levels)):
            stage = _Level()
            block_out = ch * mult[level]
            for _ in range(config.num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out, config.dropout, config.norm_groups))
                block_in = block_out
                if level == levels - 1 and config.use_attention:
                    stage.attn.append(AttnBlock(block_out, config.norm_groups))
            if level != 0:
                stage.upsample = Upsample(block_out)
            stages.insert(0, stage)
        self.up = nn.ModuleList(stages)
        self.norm_out = group_norm(block_in, config.norm_groups)
        self.conv_out = nn.Conv2d(block_in, config.in_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, z_BChw: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z_BChw))
        for level in reversed(range(len(self.up))):
            stage = self.up[level]
            for index, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[index](h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
