"""Parameter and FLOP counts against the spec, on the meta device (no memory)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from var_model import VAR, VQVAE, VARConfig, VQVAEConfig, counting

# docs/MODEL.md §2, shared with the dry-run test (tests/data/README.md)
SPEC_TOTALS = {
    int(depth): count
    for depth, count in json.loads(
        (Path(__file__).parents[1] / "data" / "var_paper_param_counts.json").read_text()
    ).items()
    if not depth.startswith("_")
}


def closed_form(depth: int) -> int:
    w = 64 * depth
    return depth * (18 * w * w + 14 * w + depth) + 2 * w * w + 5823 * w + 4096


@pytest.mark.parametrize("depth", sorted(SPEC_TOTALS))
def test_var_param_counts_match_spec(depth):
    with torch.device("meta"):
        var = VAR(VARConfig(depth=depth))
    module_counts = var.param_counts()
    assert module_counts["total"] == SPEC_TOTALS[depth] == closed_form(depth)
    assert sum(p.numel() for p in var.parameters()) == SPEC_TOTALS[depth]
    # the config-only count (for dry runs) agrees group by group with the module
    assert counting.param_counts(var.config) == module_counts
    assert sum(module_counts[g] for g in counting.PARAM_GROUPS) == module_counts["total"]


def test_per_token_excludes_adaln_and_lookups():
    config = VARConfig(depth=16)
    counts = counting.param_counts(config)
    C = config.width
    adaln = 16 * (6 * C * C + 6 * C) + 2 * C * C + 2 * C
    assert counts["block_adaln"] + counts["head_adaln"] == adaln
    lookups = (1001 + 10 + 1 + 680) * C
    assert counts["per_token"] == counts["total"] - adaln - lookups


def test_shared_adaln_counts_agree_with_module():
    config = VARConfig(depth=4, shared_adaln=True)
    with torch.device("meta"):
        var = VAR(config)
    assert var.param_counts() == counting.param_counts(config)


def test_vqvae_param_count_and_split():
    with torch.device("meta"):
        vqvae = VQVAE(VQVAEConfig())
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(vqvae) == 108_948_355
    assert count(vqvae.encoder) == 44_107_872
    assert count(vqvae.decoder) == 64_653_923
    assert count(vqvae.quantize) == 168_064


def test_attention_pairs_match_the_mask():
    for config in (VARConfig.debug(), VARConfig(depth=2)):
        with torch.device("cpu"):
            from var_model.var import block_causal_bias

            allowed = int((block_causal_bias(config.patch_nums) == 0).sum())
        assert counting.attention_pairs(config) == allowed
    assert counting.attention_pairs(VARConfig(depth=2)) == 286_434


def test_linear_flops_match_torch_flop_counter():
    """Our count minus attention equals what torch's FlopCounter sees for all linear layers."""
    config = VARConfig.debug(class_dropout=0.0)
    torch.manual_seed(0)
    var = VAR(config).eval()
    x_BLC = torch.randn(1, config.sequence_length - config.first_length, config.latent_channels)
    with FlopCounterMode(display=False) as counter:
        var(torch.tensor([1]), x_BLC)
    linear_flops = sum(v for op, v in counter.get_flop_counts()["Global"].items() if "mm" in str(op))
    forward = counting.flops_per_image(config, training=False)
    assert forward - counting.attention_flops(config) == linear_flops
    assert counting.flops_per_image(config, training=True) == 3 * forward
    assert var.flops_per_image() == 3 * forward
    assert sum(counting.flops_breakdown(config).values()) == forward


def test_six_n_l_overcounts_by_spec_ratio():
    for depth in (16, 20):
        config = VARConfig(depth=depth)
        ratio = counting.six_n_l(config) / counting.flops_per_image(config)
        assert 1.35 <= ratio <= 1.45
