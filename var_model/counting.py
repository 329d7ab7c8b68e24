"""Parameter and FLOP counts of a VAR, from its config alone (no weights: usable for 2B dry runs).

Parameter groups (they sum to `total`):
  attention   per block: mat_qkv 3C^2 (no bias) + q_bias C + v_bias C + proj C^2 + C
              + one learned scale per head (with attn_l2_norm)
  ffn         per block: fc1 C*F + F, fc2 F*C + C (F = round(mlp_ratio * C))
  block_adaln per block: ada_lin 6C^2 + 6C; shared AdaLN: one 6C^2 + 6C plus 6C per block
  head_adaln  head_nm.ada_lin 2C^2 + 2C
  embeddings  word_embed Cvae*C + C, class_emb (classes + 1)*C, lvl_embed K*C,
              pos_start pn0^2*C, pos_1LC L*C
  head        C*V + V
For the release (F = 4C, H = d, C = 64d, 1000 classes, V = 4096, Cvae = 32, L = 680) this is
the spec's closed form N = d*(18C^2 + 14C + d) + 2C^2 + 5823C + 4096.
`per_token` = attention + ffn + word_embed + head: the parameters that take part in a
matmul for every token (AdaLN runs once per image; class/level/position embeddings are
lookups). `non_embedding` = total - embeddings.
"""

from __future__ import annotations

from torch import nn

from var_model.config import VARConfig

PARAM_GROUPS = ("attention", "ffn", "block_adaln", "head_adaln", "embeddings", "head")


def param_counts(config: VARConfig) -> dict[str, int]:
    """Parameter counts by group (see module docstring), plus `total`, `per_token`, `non_embedding`."""
    C, d, F_ = config.width, config.depth, config.ffn_hidden
    heads = config.num_heads if config.attn_l2_norm else 0
    attention = d * (3 * C * C + 2 * C + C * C + C + heads)
    ffn = d * (C * F_ + F_ + F_ * C + C)
    if config.shared_adaln:
        block_adaln = 6 * C * C + 6 * C + d * 6 * C
    else:
        block_adaln = d * (6 * C * C + 6 * C)
    head_adaln = 2 * C * C + 2 * C
    word_embed = config.latent_channels * C + C
    embeddings = (
        word_embed
        + (config.num_classes + 1) * C
        + config.num_scales * C
        + config.first_length * C
        + config.sequence_length * C
    )
    head = C * config.codebook_size + config.codebook_size
    counts = dict(
        attention=attention, ffn=ffn, block_adaln=block_adaln, head_adaln=head_adaln, embeddings=embeddings, head=head
    )
    counts["total"] = sum(counts[g] for g in PARAM_GROUPS)
    counts["per_token"] = attention + ffn + word_embed + head
    counts["non_embedding"] = counts["total"] - embeddings
    return counts


def _group_of(name: str) -> str:
    if name.startswith("blocks."):
        part = name.split(".")[2]
        return {"attn": "attention", "ffn": "ffn", "ada_lin": "block_adaln", "ada_gss": "block_adaln"}[part]
    if name.startswith("shared_ada_lin."):
        return "block_adaln"
    if name.startswith("head_nm."):
        return "head_adaln"
    if name.startswith("head."):
        return "head"
    return "embeddings"  # word_embed, class_emb, lvl_embed, pos_start, pos_1LC


def module_param_counts(model: nn.Module) -> dict[str, int]:
    """The same groups counted from a built module's parameters (works on the meta device)."""
    counts = dict.fromkeys(PARAM_GROUPS, 0)
    word_embed = 0
    for name, parameter in model.named_parameters():
        counts[_group_of(name)] += parameter.numel()
        if name.startswith("word_embed."):
            word_embed += parameter.numel()
    counts["total"] = sum(counts[g] for g in PARAM_GROUPS)
    counts["per_token"] = counts["attention"] + counts["ffn"] + word_embed + counts["head"]
    counts["non_embedding"] = counts["total"] - counts["embeddings"]
    return counts


def attention_pairs(config: VARConfig) -> int:
    """Allowed (query, key) pairs of the block-causal mask: sum_k pn_k^2 * (sum_{m<=k} pn_m^2)."""
    pairs, seen = 0, 0
    for pn in config.patch_nums:
        seen += pn * pn
        pairs += pn * pn * seen
    return pairs


def attention_flops(config: VARConfig) -> int:
    """Forward FLOPs of q.k and attn.v over the allowed pairs: depth * 2 * (2 * P * C)."""
    return 2 * config.depth * 2 * attention_pairs(config) * config.width


def flops_per_image(config: VARConfig, training: bool = True) -> int:
    """Exact matmul FLOPs of one image through the VAR (2 FLOPs per multiply-add).

    forward = 2 * [ (L - pn0^2) * Cvae*C                      word_embed
                    + L * depth * (4C^2 + 2*C*F)               qkv, proj, fc1, fc2 per token
                    + depth * 2 * P * C                        q.k and attn.v, P allowed pairs
                    + depth * 6C^2 (shared AdaLN: 6C^2 once)   block AdaLN, once per image
                    + 2C^2                                     head AdaLN, once per image
                    + L * C*V ]                                head
    training = 3 * forward (backward costs two forwards).
    P counts only the (i, j) pairs the block-causal mask allows (scale(i) >= scale(j)):
    that is the work the model needs; a dense masked kernel does L^2 pairs (for 256px,
    P = 286,434 vs L^2 = 462,400). Elementwise work (norms, softmax, GELU, biases) and the
    class/level/position lookups are not counted. Compare `six_n_l`.
    """
    forward = sum(flops_breakdown(config).values())
    return 3 * forward if training else forward


def flops_breakdown(config: VARConfig) -> dict[str, int]:
    """Forward FLOPs per image by part (they sum to `flops_per_image(training=False)`)."""
    C, d, F_, L = config.width, config.depth, config.ffn_hidden, config.sequence_length
    return dict(
        word_embed=2 * (L - config.first_length) * config.latent_channels * C,
        block_linears=2 * L * d * (4 * C * C + 2 * C * F_),
        attention=attention_flops(config),
        block_adaln=2 * (6 * C * C if config.shared_adaln else d * 6 * C * C),
        head_adaln=2 * 2 * C * C,
        head=2 * L * C * config.codebook_size,
    )


def six_n_l(config: VARConfig) -> int:
    """The usual estimate 6 * N * L training FLOPs per image (N = all parameters, L tokens).

    It over-counts VAR's training compute (by ~1.35-1.4x for the released sizes) because
    the block AdaLN (a third of each block's weights) runs once per image, not per token.
    """
    return 6 * param_counts(config)["total"] * config.sequence_length
