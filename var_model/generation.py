"""Sampling from a VAR: next-scale prediction with a KV cache, CFG ramp, top-k/top-p (docs/MODEL.md §3).

One forward per scale: the tokens of scale k attend to the cached keys/values of scales
0..k-1 and to each other, which is exactly what the block-causal mask allows in training.
Shape legend: B batch, l tokens of one scale, V codebook size, C width, Cvae latent
channels, h/w latent side, pn side of one scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from var_model.errors import ConfigError, DataError


def filter_top_k_top_p(logits_BlV: torch.Tensor, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """Set to -inf every logit outside the top-k, then outside the top-p nucleus.

    top_k <= 0 and top_p <= 0 disable the filters. The most likely token always survives.
    """
    logits_BlV = logits_BlV.clone()
    V = logits_BlV.shape[-1]
    if top_k > 0 and top_k < V:
        kth_largest = logits_BlV.topk(top_k, dim=-1, largest=True, sorted=False).values.amin(dim=-1, keepdim=True)
        logits_BlV.masked_fill_(logits_BlV < kth_largest, -torch.inf)
    if top_p > 0:
        sorted_logits, sorted_idx = logits_BlV.sort(dim=-1, descending=False)
        # drop the low tail whose total probability is at most 1 - top_p
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - top_p)
        remove_sorted[..., -1:] = False
        remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
        logits_BlV.masked_fill_(remove, -torch.inf)
    return logits_BlV


def sample_tokens(
    logits_BlV: torch.Tensor, top_k: int, top_p: float, generator: torch.Generator | None
) -> torch.Tensor:
    """One multinomial sample per position after filtering: (B, l) LongTensor."""
    B, l, V = logits_BlV.shape  # noqa: E741  (l: tokens of one scale, the shape legend's name)
    probs = filter_top_k_top_p(logits_BlV.float(), top_k, top_p).softmax(dim=-1)
    return torch.multinomial(probs.view(-1, V), num_samples=1, generator=generator).view(B, l)


def _labels_tensor(
    var, labels, batch_size: int | None, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    if labels is None:
        if batch_size is None:
            raise DataError("give labels, or labels=None with batch_size to draw random classes")
        return torch.randint(0, var.num_classes, (batch_size,), generator=generator, device=device)
    if isinstance(labels, int):
        labels = [labels] * (batch_size or 1)
    label_B = torch.as_tensor(labels, device=device)
    if label_B.ndim == 0:
        label_B = label_B.view(1)
    var.check_labels(label_B, allow_null=True)
    if batch_size is not None and label_B.shape[0] != batch_size:
        raise DataError(
            f"got {label_B.shape[0]} labels but batch_size={batch_size}; give one label per "
            f"image, a single int with batch_size, or labels=None for random classes"
        )
    return label_B.long()


def keep_masks_per_scale(keep_mask: torch.Tensor, patch_nums: tuple[int, ...], batch_size: int) -> list[torch.Tensor]:
    """The keep region at every scale: area-resized mask, kept where >= 0.5, as (B, pn*pn) bools.

    A token is kept when at least half of the pixels (or latent cells) it covers are kept."""
    if keep_mask.ndim == 2:
        keep_mask = keep_mask[None, None]
    elif keep_mask.ndim == 3:
        keep_mask = keep_mask[:, None]
    if keep_mask.ndim != 4 or keep_mask.shape[1] != 1 or keep_mask.shape[0] not in (1, batch_size):
        raise DataError(
            f"keep_mask must be (H, W), (B, H, W) or (B, 1, H, W) with B in (1, {batch_size}); "
            f"got {tuple(keep_mask.shape)}"
        )
    keep_mask = keep_mask.float().expand(batch_size, -1, -1, -1)
    return [
        (F.interpolate(keep_mask, size=(pn, pn), mode="area") >= 0.5).view(batch_size, pn * pn) for pn in patch_nums
    ]


@torch.no_grad()
def generate(
    var,
    labels=None,
    cfg: float = 1.5,
    top_k: int = 900,
    top_p: float = 0.96,
    seed: int | None = 0,
    batch_size: int | None = None,
    reference_indices: list[torch.Tensor] | None = None,
    keep_mask: torch.Tensor | None = None,
    return_indices: bool = False,
):
    """Sample images in [0, 1], (B, 3, H, W).

    labels: class ids (B,), one int (with batch_size), or None for random classes; the
      null class (index num_classes) samples unconditionally.
    cfg: guidance weight; at scale k, t = cfg * k / (K - 1) and
      logits = (1 + t) * cond - t * uncond (the batch is doubled with the null class).
    top_k, top_p: filters, <= 0 disables. seed: seeds a private torch.Generator (None: global RNG).
    Masked generation (in-/out-painting, class-conditional editing): give the reference
      image's tokens `reference_indices` (from vqvae.encode_indices) and `keep_mask`
      (1 = keep the reference, at image or latent resolution); at every scale the tokens in the
      keep region are replaced by the reference tokens. Use the null class for in/out-painting.
    return_indices: also return the sampled token maps.
    """
    vqvae = var.vqvae
    if vqvae is None:
        raise ConfigError(
            "this VAR has no VQVAE to decode with; build it as VAR(config, vqvae=...) or call var.set_vqvae(vqvae)"
        )
    if (reference_indices is None) != (keep_mask is None):
        raise DataError("masked generation needs both reference_indices and keep_mask")
    device = var.pos_1LC.device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    label_B = _labels_tensor(var, labels, batch_size, device, generator)
    B, patch_nums, K = label_B.shape[0], var.patch_nums, len(var.patch_nums)
    if reference_indices is not None:
        vqvae.check_indices(reference_indices, need=K)
        sizes = sorted({idx.shape[0] for idx in reference_indices})
        if any(size not in (1, B) for size in sizes):
            raise DataError(
                f"reference_indices have batch sizes {sizes}; each must be 1 (one reference "
                f"image for all) or {B} (one per label)"
            )
        keep_masks = keep_masks_per_scale(keep_mask.to(device), patch_nums, B)
        reference_indices = [idx.to(device).expand(B, -1) for idx in reference_indices]

    def pick(k: int, logits_2BlV: torch.Tensor) -> torch.Tensor:
        t = cfg * k / (K - 1) if K > 1 else cfg
        logits_BlV = (1 + t) * logits_2BlV[:B] - t * logits_2BlV[B:]
        idx_Bl = sample_tokens(logits_BlV, top_k, top_p, generator)
        if reference_indices is not None:
            idx_Bl = torch.where(keep_masks[k], reference_indices[k], idx_Bl)
        return idx_Bl

    labels_2B = torch.cat((label_B, torch.full_like(label_B, var.num_classes)))
    f_hat, sampled, _ = run_scales(var, labels_2B, pick, copies=2)
    images = vqvae.latent_to_image(f_hat).add(1).mul(0.5)
    return (images, sampled) if return_indices else images


def run_scales(var, label_N: torch.Tensor, pick, copies: int = 1, keep_logits: bool = False):
    """The next-scale loop with a KV cache: one forward per scale.

    label_N holds `copies` stacked batches of B labels (2 for CFG: conditional, then null);
    `pick(k, logits_NlV) -> idx_Bl` chooses the tokens of scale k. Returns
    (f_hat (B, Cvae, h, w), token maps per scale, logits per scale if keep_logits else []).
    """
    quantizer = var.vqvae.quantize
    patch_nums, K = var.patch_nums, len(var.patch_nums)
    N = label_N.shape[0]
    B = N // copies
    was_training = var.training
    var.eval()  # no class dropout, no drop-path
    cond_ND, block_cond = var.condition(label_N)
    level_pos_1LC = var.lvl_embed(var.lvl_1L) + var.pos_1LC
    first = var.first_l
    token_map_NlC = (
        cond_ND.unsqueeze(1).expand(N, first, -1) + var.pos_start.expand(N, -1, -1) + level_pos_1LC[:, :first]
    )
    side = patch_nums[-1]
    f_hat = torch.zeros(B, var.config.latent_channels, side, side, device=label_N.device)
    chosen, all_logits, start = [], [], 0
    for block in var.blocks:
        block.attn.kv_caching(True)
    try:
        for k, pn in enumerate(patch_nums):
            start += pn * pn
            # no mask: the cache holds only coarser scales, and a scale sees all of itself
            logits_NlV = var.logits(var.run_blocks(token_map_NlC, block_cond, None), cond_ND)
            if keep_logits:
                all_logits.append(logits_NlV)
            idx_Bl = pick(k, logits_NlV)
            chosen.append(idx_Bl)
            h_BCpp = quantizer.embedding(idx_Bl).transpose(1, 2).reshape(B, -1, pn, pn)
            f_hat, next_map = quantizer.next_autoregressive_input(k, f_hat, h_BCpp)
            if k < K - 1:
                next_len = patch_nums[k + 1] ** 2
                token_map_NlC = (
                    var.word_embed(next_map.flatten(2).transpose(1, 2)) + level_pos_1LC[:, start : start + next_len]
                ).repeat(copies, 1, 1)
    finally:
        for block in var.blocks:
            block.attn.kv_caching(False)
        var.train(was_training)
    return f_hat, chosen, all_logits


@torch.no_grad()
def cached_teacher_forcing_logits(var, label_B: torch.Tensor, indices: list[torch.Tensor]) -> list[torch.Tensor]:
    """Logits of every scale computed the sampling way (KV cache, one forward per scale, no
    CFG) for given tokens; each (B, pn*pn, V). They equal `var(label_B, teacher input)` split
    by scale (in eval mode), which shows that the cache is exact."""
    var.check_labels(label_B)
    var.vqvae.check_indices(indices, need=len(var.patch_nums))
    _, _, logits = run_scales(var, label_B, lambda k, logits_BlV: indices[k], copies=1, keep_logits=True)
    return logits
