"""Sampling: filters, seeding, CFG ramp, output range, masked generation."""

from __future__ import annotations

import math

import pytest
import torch

from var_model import VAR, ConfigError, DataError, VARConfig
from var_model.generation import filter_top_k_top_p


def test_top_k_keeps_k_largest():
    logits = torch.tensor([[[0.0, 3.0, 1.0, 2.0]]])
    kept = torch.isfinite(filter_top_k_top_p(logits, top_k=2, top_p=0.0))
    assert kept.tolist() == [[[False, True, False, True]]]


def test_top_p_keeps_the_nucleus():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().view(1, 1, 4)
    kept = torch.isfinite(filter_top_k_top_p(logits, top_k=0, top_p=0.75))
    assert kept.view(-1).tolist() == [True, True, False, False]
    # the top token always survives, even for a tiny top_p
    assert torch.isfinite(filter_top_k_top_p(logits, top_k=0, top_p=1e-6)).view(-1).tolist() == [
        True,
        False,
        False,
        False,
    ]


def test_non_positive_filters_disable():
    logits = torch.randn(2, 3, 16)
    assert torch.equal(filter_top_k_top_p(logits, top_k=0, top_p=0.0), logits)
    assert torch.equal(filter_top_k_top_p(logits, top_k=-1, top_p=-0.5), logits)


def test_generate_is_seeded_and_in_unit_range(tiny_var):
    first = tiny_var.generate([1, 2, 3], cfg=1.5, top_k=10, top_p=0.9, seed=7)
    again = tiny_var.generate([1, 2, 3], cfg=1.5, top_k=10, top_p=0.9, seed=7)
    assert first.shape == (3, 3, 32, 32)
    assert torch.equal(first, again)
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    _, tokens_a = tiny_var.generate([1, 2, 3], seed=7, top_k=0, top_p=0, return_indices=True)
    _, tokens_b = tiny_var.generate([1, 2, 3], seed=8, top_k=0, top_p=0, return_indices=True)
    assert any(not torch.equal(a, b) for a, b in zip(tokens_a, tokens_b, strict=True))


def test_cfg_ramp_starts_at_zero(tiny_vqvae):
    """At the first scale t = 0, so the first tokens do not depend on cfg; later ones do."""
    torch.manual_seed(0)
    var = VAR(VARConfig.debug(init_adaln_gamma=0.5, init_head=3.0), vqvae=tiny_vqvae)
    labels = list(range(8))
    _, low = var.generate(labels, cfg=0.0, top_k=0, top_p=0, seed=3, return_indices=True)
    _, high = var.generate(labels, cfg=20.0, top_k=0, top_p=0, seed=3, return_indices=True)
    assert torch.equal(low[0], high[0])
    assert not torch.equal(low[-1], high[-1])


def test_generate_restores_training_mode_and_cache(tiny_var):
    tiny_var.train()
    tiny_var.generate(labels=None, batch_size=2, seed=0)
    assert tiny_var.training
    assert all(not b.attn.caching and b.attn.cached_k is None for b in tiny_var.blocks)


def test_masked_generation_keeps_reference_tokens(tiny_var, tiny_vqvae, tiny_images):
    reference = [idx[:1] for idx in tiny_vqvae.encode_indices(tiny_images)]
    keep = torch.zeros(32, 32)
    keep[:, :16] = 1.0  # keep the left half, in-paint the right half
    _, tokens = tiny_var.generate(
        [10, 10], cfg=1.0, top_k=0, top_p=0, seed=0, reference_indices=reference, keep_mask=keep, return_indices=True
    )
    last = tokens[-1].view(2, 4, 4)
    assert torch.equal(last[:, :, :2], reference[-1].view(1, 4, 4)[:, :, :2].expand(2, -1, -1))
    full, full_tokens = tiny_var.generate(
        [3], seed=0, reference_indices=reference, keep_mask=torch.ones(32, 32), return_indices=True
    )
    assert all(torch.equal(a, b) for a, b in zip(full_tokens, reference, strict=True))
    assert torch.allclose(full, tiny_vqvae.decode_indices(reference).add(1).mul(0.5), atol=1e-5)


def test_generation_errors(tiny_var):
    with pytest.raises(DataError, match="labels out of range"):
        tiny_var.generate([11])
    with pytest.raises(DataError, match="both reference_indices and keep_mask"):
        tiny_var.generate([1], keep_mask=torch.ones(4, 4))
    lone = VAR(VARConfig.debug())
    with pytest.raises(ConfigError, match="no VQVAE"):
        lone.generate([1])
    assert math.isfinite(float(tiny_var.generate([1], seed=1).sum()))
