"""VAR: the next-scale prediction transformer (docs/MODEL.md §2).

Shape legend: B batch, L tokens of all scales, l tokens of one scale, C width,
Cvae latent channels, V codebook size, D condition dim (= C), K scales.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import BlockMask
from torch.utils.checkpoint import checkpoint

from var_model import counting, generation
from var_model.attention import (
    BlockMaskCache,
    ScalePrefixes,
    check_attention_kernel,
    default_attention_kernel,
    flex_trains_on,
)
from var_model.blocks import AdaLNBeforeHead, AdaLNSelfAttn, SharedAdaLin
from var_model.config import VARConfig, check_compatible
from var_model.errors import ConfigError, DataError


def scale_ids(patch_nums: tuple[int, ...]) -> torch.Tensor:
    """Scale index of every token, shape (L,): [0, 1, 1, 1, 1, 2, ...]."""
    return torch.cat([torch.full((pn * pn,), k, dtype=torch.long) for k, pn in enumerate(patch_nums)])


def scale_boundaries(patch_nums: tuple[int, ...]) -> list[tuple[int, int]]:
    """(begin, end) token positions of every scale: [(0, 1), (1, 5), (5, 14), ...]."""
    bounds, begin = [], 0
    for pn in patch_nums:
        bounds.append((begin, begin + pn * pn))
        begin += pn * pn
    return bounds


def block_causal_bias(patch_nums: tuple[int, ...]) -> torch.Tensor:
    """Additive mask (1, 1, L, L): 0 where scale(i) >= scale(j), -inf elsewhere."""
    ids_L = scale_ids(patch_nums)
    allowed_LL = ids_L.unsqueeze(1) >= ids_L.unsqueeze(0)
    zeros = torch.zeros(allowed_LL.shape)
    return torch.where(allowed_LL, zeros, torch.full_like(zeros, -math.inf)).reshape(1, 1, *allowed_LL.shape)


def _autocast_disabled(device: torch.device):
    """A float32 region under autocast. Meta tensors (shape-only dry runs) have no autocast
    backend, so there it is a no-op."""
    if device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)


class VAR(nn.Module):
    """Class-conditional next-scale prediction over the VQVAE's K token maps.

    Sequence: [class embedding + pos_start, word_embed(teacher input)] + lvl_embed(scale)
    + pos_1LC; AdaLN blocks under the block-causal mask; AdaLN head -> logits over V codes.
    The VQVAE is held as a non-parameter reference (for sampling), so `state_dict()` holds
    VAR weights only, with the released key names.

    Execution choices, not architecture (not in the config, not in `state_dict()`): the
    attention kernel of the training forward (`use_attention_kernel`) and per-block
    activation checkpointing (`use_activation_checkpointing`). Both compute the same values.
    """

    def __init__(self, config: VARConfig | None = None, vqvae: nn.Module | None = None):
        super().__init__()
        config = config if config is not None else VARConfig()
        if vqvae is not None:
            check_compatible(vqvae.config, config)
        self.config = config
        # a tuple keeps the tokenizer out of parameters(), state_dict() and .to() of the VAR
        self._vqvae_reference = (vqvae,)
        C, L = config.width, config.sequence_length
        self.num_classes, self.patch_nums = config.num_classes, config.patch_nums
        self.first_l, self.L = config.first_length, L

        self.pos_start = nn.Parameter(torch.empty(1, self.first_l, C))
        self.pos_1LC = nn.Parameter(torch.empty(1, L, C))
        # built once: the scale of each token and the block-causal mask (buffers of the release)
        self.register_buffer("lvl_1L", scale_ids(config.patch_nums).view(1, L))
        self.register_buffer("attn_bias_for_masking", block_causal_bias(config.patch_nums))
        self.word_embed = nn.Linear(config.latent_channels, C)
        self.class_emb = nn.Embedding(config.num_classes + 1, C)  # the last index is the null class
        self.lvl_embed = nn.Embedding(config.num_scales, C)
        self.shared_ada_lin = nn.Sequential(nn.SiLU(), SharedAdaLin(C, 6 * C)) if config.shared_adaln else nn.Identity()
        # linear over blocks, 0 at the first; plain Python so that building on the meta device works
        drop_path_rates = [config.drop_path_rate * i / max(config.depth - 1, 1) for i in range(config.depth)]
        self.blocks = nn.ModuleList(
            [
                AdaLNSelfAttn(
                    C,
                    config.num_heads,
                    config.ffn_hidden,
                    drop_path_rates[i],
                    config.attn_l2_norm,
                    config.shared_adaln,
                    config.norm_eps,
                )
                for i in range(config.depth)
            ]
        )
        self.head_nm = AdaLNBeforeHead(C, config.norm_eps)
        self.head = nn.Linear(C, config.codebook_size)
        self.init_weights()
        # plain attributes, not buffers: they must stay out of state_dict() and checkpoints
        self.attention_kernel = "sdpa"
        self.activation_checkpointing = False
        self._block_masks = BlockMaskCache()
        self._scale_prefixes = ScalePrefixes(tuple(scale_boundaries(config.patch_nums)))

    @property
    def vqvae(self):
        return self._vqvae_reference[0]

    def set_vqvae(self, vqvae: nn.Module) -> None:
        check_compatible(vqvae.config, self.config)
        self._vqvae_reference = (vqvae,)

    # ---------------------------------------------------------------- execution choices
    def use_attention_kernel(self, name: str) -> None:
        """Attention kernel of the block-causal training forward: "sdpa", "scalewise" or "flex" (see
        `var_model.attention`; `default_attention_kernel(device_type)` is the measured choice).
        The KV-cached sampling path always uses SDPA."""
        self.attention_kernel = check_attention_kernel(name)

    def use_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute each transformer block in the backward instead of keeping its
        activations: about one more block forward of compute for the memory of the block
        inputs only. Applies to forwards that record gradients, never under no_grad or with
        the KV cache."""
        if not isinstance(enabled, bool):
            raise ConfigError(f"activation_checkpointing={enabled!r} is not allowed: True or False")
        self.activation_checkpointing = enabled

    # ---------------------------------------------------------------- initialisation
    @torch.no_grad()
    def init_weights(self) -> None:
        """The spec's init: trunc-normal std sqrt(1/(3C)); head x init_head; residual
        projections / sqrt(2 depth); AdaLN scale/shift rows x init_adaln, gamma rows x
        init_adaln_gamma."""
        cfg = self.config
        std = cfg.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                nn.init.trunc_normal_(module.weight, std=std)
        nn.init.trunc_normal_(self.pos_start, std=std)
        nn.init.trunc_normal_(self.pos_1LC, std=std)
        self.head.weight.mul_(cfg.init_head)
        self.head.bias.zero_()
        self.head_nm.ada_lin[-1].weight.mul_(cfg.init_adaln)
        self.head_nm.ada_lin[-1].bias.zero_()
        C = cfg.width
        for block in self.blocks:
            block.attn.proj.weight.div_(math.sqrt(2 * cfg.depth))
            block.ffn.fc2.weight.div_(math.sqrt(2 * cfg.depth))
            if cfg.shared_adaln:
                block.ada_gss[:, :, 2:].mul_(cfg.init_adaln)
                block.ada_gss[:, :, :2].mul_(cfg.init_adaln_gamma)
            else:
                block.ada_lin[-1].weight[2 * C :].mul_(cfg.init_adaln)
                block.ada_lin[-1].weight[: 2 * C].mul_(cfg.init_adaln_gamma)
                block.ada_lin[-1].bias.zero_()

    # ---------------------------------------------------------------- input checks
    def check_labels(self, label_B: torch.Tensor, allow_null: bool = True, sync: bool = True) -> None:
        """Raise DataError unless label_B is a 1-D integer tensor of classes (the null class
        num_classes allowed when allow_null).

        The range check reads values, which on an accelerator is a host sync. With
        sync=False (the training forward) accelerator labels get an asynchronous device
        assert instead: no stall of the launch queue, and bad labels still stop the run (at
        a later kernel) rather than index the class embedding out of range. CPU tensors are
        always checked exactly (reading them costs nothing)."""
        top = self.num_classes if allow_null else self.num_classes - 1
        if not isinstance(label_B, torch.Tensor) or label_B.ndim != 1 or label_B.dtype.is_floating_point:
            shape = tuple(label_B.shape) if isinstance(label_B, torch.Tensor) else type(label_B).__name__
            raise DataError(f"labels must be a 1-D integer tensor (B,); got {shape}")
        if not label_B.numel():
            return
        allowed = (
            f"allowed [0, {top}] (num_classes={self.num_classes}"
            f"{', index num_classes is the null class' if allow_null else ''})"
        )
        out_of_range_B = (label_B < 0) | (label_B > top)
        if not sync and label_B.device.type != "cpu":
            torch._assert_async(~out_of_range_B.any(), f"labels out of range: {allowed}")
        elif bool(out_of_range_B.any()):  # a CPU-GPU sync point when label_B is on a GPU
            raise DataError(f"labels out of range: got min {int(label_B.min())}, max {int(label_B.max())}; {allowed}")

    def _check_inputs(self, label_B: torch.Tensor, x_BLC: torch.Tensor) -> None:
        self.check_labels(label_B, sync=False)  # no host sync in the training step
        want = (label_B.shape[0], self.L - self.first_l, self.config.latent_channels)
        if x_BLC.ndim != 3 or tuple(x_BLC.shape) != want:
            raise DataError(
                f"teacher-forcing input must have shape (B, L - pn0^2, Cvae) = {want}; "
                f"got {tuple(x_BLC.shape)} (use vqvae.teacher_forcing_input(indices))"
            )

    # ---------------------------------------------------------------- shared pieces
    def condition(self, label_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class embedding (B, D), what the blocks take: the same, or the shared projection)."""
        cond_BD = self.class_emb(label_B)
        return cond_BD, self.shared_ada_lin(cond_BD)

    def _mask_for(self, device: torch.device) -> torch.Tensor | BlockMask | ScalePrefixes:
        """The block-causal mask of the chosen kernel: FlexAttention's cached BlockMask, the
        scale boundaries of scale-wise SDPA (built once from patch_nums), or SDPA's additive
        bias in the dtype attention will run in (cast once per forward under autocast, not
        once per block; a no-op in float32). Meta tensors (shape-only dry runs) take the bias:
        shapes do not depend on the kernel."""
        if self.attention_kernel == "scalewise" and device.type != "meta":
            return self._scale_prefixes
        if self.attention_kernel == "flex" and device.type != "meta":
            if torch.is_grad_enabled() and not flex_trains_on(device.type):
                raise ConfigError(
                    f"attention='flex' cannot train on {device.type}: torch {torch.__version__} has no "
                    f"FlexAttention backward there; use attention="
                    f"{default_attention_kernel(device.type)!r} (the default for {device.type}), "
                    f"or run the forward under torch.no_grad()"
                )
            return self._block_masks.get(self.lvl_1L[0])
        mask = self.attn_bias_for_masking
        if device.type != "meta" and torch.is_autocast_enabled(device.type):
            mask = mask.to(torch.get_autocast_dtype(device.type))
        return mask

    def run_blocks(
        self, x_BLC: torch.Tensor, block_cond: torch.Tensor, attn_bias: torch.Tensor | BlockMask | ScalePrefixes | None
    ) -> torch.Tensor:
        recompute = self.activation_checkpointing and torch.is_grad_enabled() and not self.blocks[0].attn.caching
        for block in self.blocks:
            if recompute:
                # non-reentrant: works with inputs that need no grad and under torch.compile;
                # preserve_rng_state (the default) replays drop-path's draws in the recompute
                x_BLC = checkpoint(block, x_BLC, block_cond, attn_bias, use_reentrant=False)
            else:
                x_BLC = block(x_BLC, block_cond, attn_bias)
        return x_BLC

    def logits(self, h_BLC: torch.Tensor, cond_BD: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_nm(h_BLC.float(), cond_BD.float())).float()

    # ---------------------------------------------------------------- VAR training
    def forward(self, label_B: torch.Tensor, x_BLC: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: class labels (B,) and VQVAE input (B, L - pn0^2, Cvae) -> logits (B, L, V) float32.

        In training mode each label becomes the null class with probability class_dropout.
        """
        self._check_inputs(label_B, x_BLC)
        B = label_B.shape[0]
        # embeddings in float32 even under autocast, as in the release
        with _autocast_disabled(x_BLC.device):
            if self.training and self.config.class_dropout > 0:
                drop_B = torch.rand(B, device=label_B.device) < self.config.class_dropout
                label_B = torch.where(drop_B, torch.full_like(label_B, self.num_classes), label_B)
            cond_BD, block_cond = self.condition(label_B)
            sos_BlC = cond_BD.unsqueeze(1).expand(B, self.first_l, -1) + self.pos_start.expand(B, -1, -1)
            h_BLC = torch.cat((sos_BlC, self.word_embed(x_BLC.float())), dim=1)
            # one (1, L, C) lookup broadcast over the batch: the same sum as a per-image
            # (B, L) lookup, without B*L gathered rows and a B*L-index embedding backward
            h_BLC = h_BLC + (self.lvl_embed(self.lvl_1L) + self.pos_1LC)
        h_BLC = self.run_blocks(h_BLC, block_cond, self._mask_for(x_BLC.device))
        return self.logits(h_BLC, cond_BD)

    # ---------------------------------------------------------------- counting
    def param_counts(self) -> dict[str, int]:
        """Parameters of this module by group (see `counting.param_counts` for the groups)."""
        return counting.module_param_counts(self)

    def flops_per_image(self, training: bool = True) -> int:
        """Exact matmul FLOPs per image (see `counting.flops_per_image`)."""
        return counting.flops_per_image(self.config, training=training)

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def generate(
        self, labels, cfg: float = 1.5, top_k: int = 900, top_p: float = 0.96, seed: int | None = 0, **kwargs
    ) -> torch.Tensor:
        """Sample images in [0, 1] (B, 3, H, W); see `var_model.generation.generate`."""
        return generation.generate(self, labels, cfg=cfg, top_k=top_k, top_p=top_p, seed=seed, **kwargs)

    def extra_repr(self) -> str:
        cfg = self.config
        return f"depth={cfg.depth}, width={cfg.width}, heads={cfg.num_heads}, L={self.L}, V={cfg.codebook_size}"


def loss_per_token(logits_BLV: torch.Tensor, target_BL: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every token, (B, L); the mean is the training loss (uniform per token)."""
    if logits_BLV.shape[:2] != target_BL.shape:
        raise DataError(f"targets {tuple(target_BL.shape)} do not match logits {tuple(logits_BLV.shape[:2])}")
    B, L, V = logits_BLV.shape
    # flat (B*L, V) rows: cross-entropy over a strided (B, V, L) view is ~5x slower on CPU
    return F.cross_entropy(logits_BLV.reshape(B * L, V), target_BL.reshape(B * L), reduction="none").view(B, L)


def build_var(depth: int, vqvae: nn.Module | None = None, **fields) -> VAR:
    """One factory keyed on depth; the tokenizer's codebook, latent channels and scales are used."""
    if vqvae is not None:
        config = VARConfig.for_vqvae(vqvae.config, depth=depth, **fields)
    else:
        config = VARConfig(depth=depth, **fields)
    return VAR(config, vqvae=vqvae)
