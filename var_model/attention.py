"""Attention kernels of the VAR's block-causal training forward: masked SDPA, scale-wise SDPA
or FlexAttention.

All three compute the same thing: softmax(scale * q k^T + mask) v, where a query of scale k sees
the keys of scales <= k. "sdpa" reads a dense additive (L, L) mask. "scalewise" runs one SDPA per
scale: that scale's queries over the key prefix of scales 0..k, with no mask, so the masked pairs
(38% at 256px) are never computed and SDPA takes its unmasked path (flash attention on CUDA).
"flex" takes a `BlockMask` (which (q-block, kv-block) tiles have any allowed pair) plus the
`mask_mod` scale(q) >= scale(kv) for the partial tiles, so fully masked tiles are skipped.
The KV-cached sampling path needs no mask and always uses SDPA (it passes no mask).

Shape legend: B batch, H heads, L tokens, c head dim.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import (
    BlockMask,
    create_block_mask,
    flex_attention,
)

from var_model.errors import ConfigError

ATTENTION_KERNELS = ("sdpa", "scalewise", "flex")

# torch's default sparse tile (and the Triton kernels' default BLOCK_M): the kernel requires
# the BlockMask tile to be a multiple of its own, so a smaller one needs kernel_options too.
# Measured here, the share of (q, kv) tiles skipped with 128-token tiles is 0.8% at 256px
# (L = 680) and 27.5% at 512px (L = 2240); 64-token tiles would skip 24.7% at 256px. Trying
# 64 on CUDA is left to the GPU check (it is not measurable on CPU, see below).
FLEX_BLOCK_SIZE = 128


@functools.cache
def _compiled_flex_attention():
    """The fused kernel comes from compiling flex_attention (uncompiled, torch runs a reference
    path that materialises the whole score matrix). Compiled once, on first use: calling
    torch.compile imports dynamo and inductor, 4-5 s of every process's start-up (every Ray
    worker, `varscale fit`), though only a "flex" model ever calls it. A model compiled as a
    whole inlines this call into its own graph."""
    return torch.compile(flex_attention, dynamic=False)


def check_attention_kernel(name: str) -> str:
    """Return `name` if it is a known kernel, else raise ConfigError naming the allowed ones."""
    if name not in ATTENTION_KERNELS:
        raise ConfigError(f"attention={name!r} is not allowed: one of {ATTENTION_KERNELS}")
    return name


def default_attention_kernel(device_type: str, compiled: bool = False) -> str:
    """The faster exact kernel for training on this device type ("cpu", "cuda", ...), for a
    compiled or an eager model.

    CPU, compiled: "scalewise"; CPU, eager (the CPU default, `compile: auto` is off there):
    "sdpa". Measured (one thread, float32, 256px, steady-state CPU time per training
    step of `python -m var_model.bench`, medians over interleaved runs against eager "sdpa"):
    compiled "scalewise" 0.85x at d6 (batch 2) where compiled "sdpa" is 0.95x; compiled
    "scalewise" with fused AdamW 0.85x at d6 and 0.87x at d12 (batch 1). Eager, the gain is
    small and within this machine's noise: 0.91x (d6) and 0.99x (d12) in interleaved steps of
    one process, 1.06x over 3 separate runs at d6.
    At one d6 layer (batch 2) forward + backward it takes 60-77 ms against masked SDPA's 83-100:
    it skips the 38% masked pairs and reads no mask. FlexAttention cannot train on CPU at all:
    torch 2.13 has no backward there (`_validate_device` raises NotImplementedError for inputs
    that require grad), and its forward alone is no faster (d6, batch 2, no_grad: SDPA 1052 ms,
    compiled flex 1141 ms, flex/SDPA 1.03, median of 12 paired passes).
    CUDA: "flex", pending the GPU check (benchmarks/gpu_check.sh). "scalewise" is the candidate
    to replace it there: without a mask SDPA dispatches to flash attention (bf16, head dim 64),
    and it computes only the allowed 62% of (q, kv) pairs at 256px, where flex's 128-token
    tiles skip 0.8%. It stays "flex" until the GPU check has timed both and the memory plan
    (`var_model.memory`) lists "scalewise".
    Eager at the demo's size (d5, width 160, 130 tokens over 6 scales, batch 8, forward and
    backward) "scalewise" is 1.12x slower than "sdpa" (227 vs 255 ms per step, best of 3): with
    short sequences the 6 separate calls cost more than the masked pairs they skip.
    Other device types: "sdpa", the kernel every backend has.
    """
    if device_type == "cuda":
        return "flex"
    if device_type == "cpu" and compiled:
        return "scalewise"
    return "sdpa"


def flex_trains_on(device_type: str) -> bool:
    """Whether this torch has a FlexAttention backward on the device type (not on CPU or MPS)."""
    return device_type not in ("cpu", "mps")


def block_causal_block_mask(scale_ids_L: torch.Tensor, block_size: int = FLEX_BLOCK_SIZE) -> BlockMask:
    """The BlockMask of scale(q) >= scale(kv) for a (L,) tensor of token scales, on its device.

    One mask serves every batch and head (B = H = None broadcast), so it is built once per
    (patch_nums, device) and cached by `BlockMaskCache`.
    """
    L = scale_ids_L.shape[0]

    def scale_causal(batch, head, q_index, kv_index):
        return scale_ids_L[q_index] >= scale_ids_L[kv_index]

    return create_block_mask(scale_causal, None, None, L, L, device=scale_ids_L.device, BLOCK_SIZE=block_size)


class BlockMaskCache:
    """The block-causal BlockMask of one model's scales, one per device, built on first use.

    Building a BlockMask evaluates the mask_mod over all (L, L) pairs: cheap once, wasteful
    per step. Held by the model (not a module global), so two models never share state;
    a model's scales never change, so the device is the whole key.
    """

    def __init__(self, block_size: int = FLEX_BLOCK_SIZE):
        self.block_size = block_size
        self._masks: dict[torch.device, BlockMask] = {}

    def get(self, scale_ids_L: torch.Tensor) -> BlockMask:
        """The mask for these token scales (L,), on their device."""
        mask = self._masks.get(scale_ids_L.device)
        if mask is None:
            build = self._build
            if torch.compiler.is_compiling():
                # Under torch.compile of the whole model the build runs eagerly (a graph break on
                # the first call only), so the mask is a cached input of the graph and never
                # traced. Disabled here, not by a decorator: that would import dynamo with this
                # module (attention's _compiled_flex_attention says why that is avoided).
                build = torch.compiler.disable(build)
            mask = build(scale_ids_L)
        return mask

    def _build(self, scale_ids_L: torch.Tensor) -> BlockMask:
        mask = block_causal_block_mask(scale_ids_L, self.block_size)
        self._masks[scale_ids_L.device] = mask
        return mask


@dataclass(frozen=True)
class ScalePrefixes:
    """The block-causal mask as scale boundaries: (begin, end) token positions of every scale.

    The queries of the scale at [begin, end) see exactly the keys [0, end): a prefix. Python
    ints, not a tensor, so that slicing by them needs no host sync and torch.compile unrolls
    the per-scale loop into one graph (guarding on these constants).
    """

    bounds: tuple[tuple[int, int], ...]

    def __post_init__(self):
        begin = 0
        for scale_begin, scale_end in self.bounds:
            # an internal invariant: the model builds these from its patch_nums
            assert scale_begin == begin and scale_end > scale_begin, self.bounds
            begin = scale_end


def attend_scalewise(
    q_BHLc: torch.Tensor, k_BHLc: torch.Tensor, v_BHLc: torch.Tensor, prefixes: ScalePrefixes, scale: float
) -> torch.Tensor:
    """Block-causal attention as one unmasked SDPA per scale over its key prefix; (B, H, L, c).

    Each scale's output (B, H, l, c) is transposed to (B, l, H, c) before the concatenation:
    the CPU kernel returns that layout underneath, and the result is then a (B, H, L, c) view
    of a contiguous (B, L, H, c) tensor, so the caller's transpose-reshape to (B, L, C) is free.
    """
    outputs_BlHc = [
        F.scaled_dot_product_attention(
            q_BHLc[:, :, begin:end], k_BHLc[:, :, :end], v_BHLc[:, :, :end], scale=scale
        ).transpose(1, 2)
        for begin, end in prefixes.bounds
    ]
    return torch.cat(outputs_BlHc, dim=1).transpose(1, 2)


def attend(
    q_BHLc: torch.Tensor,
    k_BHLc: torch.Tensor,
    v_BHLc: torch.Tensor,
    mask: torch.Tensor | BlockMask | ScalePrefixes | None,
    scale: float,
) -> torch.Tensor:
    """softmax(scale q k^T + mask) v with SDPA (an additive mask tensor, or None: no mask),
    scale-wise SDPA (ScalePrefixes) or compiled FlexAttention (a BlockMask). q, k, v share one
    dtype."""
    if isinstance(mask, BlockMask):
        return _compiled_flex_attention()(q_BHLc, k_BHLc, v_BHLc, block_mask=mask, scale=scale)
    if isinstance(mask, ScalePrefixes):
        return attend_scalewise(q_BHLc, k_BHLc, v_BHLc, mask, scale)
    mask = mask.to(v_BHLc.dtype) if mask is not None else None
    return F.scaled_dot_product_attention(q_BHLc, k_BHLc, v_BHLc, attn_mask=mask, scale=scale)
