"""Transformer pieces of VAR: AdaLN self-attention blocks and the AdaLN head norm (docs/MODEL.md §2).

Module names follow the released checkpoint (`blocks.0.attn.mat_qkv.weight`,
`blocks.0.ada_lin.1.weight`, `head_nm.ada_lin.1.weight`).
Shape legend: B batch, L tokens, C width, H heads, c head dim, D condition dim (= C).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import BlockMask

from var_model.attention import ScalePrefixes, attend


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample, rescaling the kept ones."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x_BLC: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x_BLC
        keep = 1.0 - self.drop_prob
        mask_B11 = x_BLC.new_empty(x_BLC.shape[0], 1, 1).bernoulli_(keep).div_(keep)
        return x_BLC * mask_B11

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.4f}"


class FFN(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x_BLC: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x_BLC)))


class SelfAttention(nn.Module):
    """Multi-head attention with q/v biases (k bias fixed at zero) and optional q/k L2 norm.

    With `attn_l2_norm`, q and k are unit vectors per head and q is scaled by
    exp(min(s_h, ln 100)), s_h learned per head (init ln 4); the softmax scale is then 1.
    Without it the scale is 0.25/sqrt(head_dim), as in the release.
    Kernels (`var_model.attention`): in training the mask is the block-causal additive bias
    (SDPA: the memory-efficient kernel on CUDA, the fused CPU kernel), the scale boundaries
    (scale-wise SDPA, unmasked per scale) or a BlockMask (FlexAttention); with the KV cache no
    mask is needed, so SDPA can use flash attention.
    """

    def __init__(self, width: int, num_heads: int, attn_l2_norm: bool):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, width // num_heads
        self.attn_l2_norm = attn_l2_norm
        if attn_l2_norm:
            self.scale = 1.0
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, num_heads, 1, 1), 4.0).log())
            self.max_scale_mul = math.log(100)
        else:
            self.scale = 0.25 / math.sqrt(self.head_dim)
        self.mat_qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.register_buffer("zero_k_bias", torch.zeros(width))
        self.proj = nn.Linear(width, width)
        # KV cache for sampling: one forward per scale appends that scale's keys and values
        self.caching = False
        self.cached_k: torch.Tensor | None = None
        self.cached_v: torch.Tensor | None = None

    def kv_caching(self, enable: bool) -> None:
        self.caching, self.cached_k, self.cached_v = enable, None, None

    def forward(self, x_BLC: torch.Tensor, attn_bias: torch.Tensor | BlockMask | ScalePrefixes | None) -> torch.Tensor:
        B, L, C = x_BLC.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x_BLC, self.mat_qkv.weight, bias).view(B, L, 3, self.num_heads, self.head_dim)
        q_BHLc, k_BHLc, v_BHLc = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.attn_l2_norm:
            scale_mul_1H11 = self.scale_mul_1H11.clamp_max(self.max_scale_mul).exp()
            q_BHLc = F.normalize(q_BHLc, dim=-1).mul(scale_mul_1H11)
            k_BHLc = F.normalize(k_BHLc, dim=-1)
        if self.caching:
            if self.cached_k is not None:
                k_BHLc = torch.cat((self.cached_k, k_BHLc), dim=2)
                v_BHLc = torch.cat((self.cached_v, v_BHLc), dim=2)
            self.cached_k, self.cached_v = k_BHLc, v_BHLc
        # q may be float32 after the norm under autocast; both kernels need one dtype throughout
        dtype = v_BHLc.dtype
        out_BHLc = attend(q_BHLc.to(dtype), k_BHLc.to(dtype), v_BHLc, attn_bias, self.scale)
        return self.proj(out_BHLc.transpose(1, 2).reshape(B, L, C))


class AdaLNSelfAttn(nn.Module):
    """x += attn(LN(x)(1+scale1)+shift1)*gamma1; x += ffn(LN(x)(1+scale2)+shift2)*gamma2.

    The six modulation vectors come from the class condition: `ada_lin` = SiLU -> Linear(D, 6C)
    per block, or (shared AdaLN) one shared projection plus a learned per-block offset `ada_gss`.
    Their order is gamma1, gamma2, scale1, scale2, shift1, shift2.
    """

    def __init__(
        self,
        width: int,
        num_heads: int,
        mlp_hidden: int,
        drop_path: float,
        attn_l2_norm: bool,
        shared_adaln: bool,
        norm_eps: float,
    ):
        super().__init__()
        self.width = width
        self.attn = SelfAttention(width, num_heads, attn_l2_norm)
        self.ffn = FFN(width, mlp_hidden)
        self.ln_wo_grad = nn.LayerNorm(width, eps=norm_eps, elementwise_affine=False)
        self.drop_path = DropPath(drop_path)
        self.shared_adaln = shared_adaln
        if shared_adaln:
            self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, width) / math.sqrt(width))
        else:
            self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(
        self, x_BLC: torch.Tensor, cond: torch.Tensor, attn_bias: torch.Tensor | BlockMask | ScalePrefixes | None
    ) -> torch.Tensor:
        """`cond` is the class embedding (B, D), or with shared AdaLN the shared projection (B, 1, 6, C)."""
        if self.shared_adaln:
            modulation_B16C = self.ada_gss + cond
        else:
            modulation_B16C = self.ada_lin(cond).view(-1, 1, 6, self.width)
        gamma1, gamma2, scale1, scale2, shift1, shift2 = modulation_B16C.unbind(2)
        h_BLC = self.attn(self.ln_wo_grad(x_BLC) * (scale1 + 1) + shift1, attn_bias)
        x_BLC = x_BLC + self.drop_path(h_BLC * gamma1)
        h_BLC = self.ffn(self.ln_wo_grad(x_BLC) * (scale2 + 1) + shift2)
        return x_BLC + self.drop_path(h_BLC * gamma2)


class AdaLNBeforeHead(nn.Module):
    """LN(x) * (1 + scale) + shift with (scale, shift) = Linear(D, 2C)(SiLU(cond))."""

    def __init__(self, width: int, norm_eps: float):
        super().__init__()
        self.width = width
        self.ln_wo_grad = nn.LayerNorm(width, eps=norm_eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x_BLC: torch.Tensor, cond_BD: torch.Tensor) -> torch.Tensor:
        scale, shift = self.ada_lin(cond_BD).view(-1, 1, 2, self.width).unbind(2)
        return self.ln_wo_grad(x_BLC) * (scale + 1) + shift


class SharedAdaLin(nn.Linear):
    """The shared AdaLN projection: (B, D) -> (B, 1, 6, C)."""

    def forward(self, cond_BD: torch.Tensor) -> torch.Tensor:
        return super().forward(cond_BD).view(-1, 1, 6, self.out_features // 6)
