"""Scale-wise attention (one unmasked SDPA per scale over its key prefix) is the block-causal
attention: its prefixes are the mask's allowed keys, and it equals masked SDPA in the forward and
in every gradient (float32), under activation checkpointing and torch.compile too, while the
KV-cached sampling path is unchanged."""

from __future__ import annotations

import math

import pytest
import torch

from var_model import VAR, VARConfig
from var_model.attention import ScalePrefixes, attend
from var_model.config import PATCH_NUMS_256
from var_model.var import block_causal_bias, scale_boundaries

DEBUG_PATCH_NUMS = (1, 2, 3, 4, 6, 8)
PATCH_NUMS_CASES = pytest.mark.parametrize("patch_nums", [DEBUG_PATCH_NUMS, PATCH_NUMS_256], ids=["debug", "256px"])
L2_NORM_CASES = pytest.mark.parametrize("attn_l2_norm", [True, False], ids=["l2norm", "plain"])


def _tiny_var(patch_nums, attn_l2_norm: bool, **fields) -> VAR:
    torch.manual_seed(0)
    # large AdaLN gamma and head init so that attention visibly moves the logits; no random
    # draws (drop path, class dropout) so that two forwards see the same network
    config = VARConfig.debug(
        patch_nums=patch_nums,
        attn_l2_norm=attn_l2_norm,
        init_adaln_gamma=0.5,
        init_head=1.0,
        drop_path_rate=0.0,
        class_dropout=0.0,
        **fields,
    )
    return VAR(config).train()


def _inputs(var: VAR, batch: int = 3):
    generator = torch.Generator().manual_seed(1)
    config = var.config
    x_BLC = torch.randn(
        batch, config.sequence_length - config.first_length, config.latent_channels, generator=generator
    )
    label_B = torch.randint(0, config.num_classes, (batch,), generator=generator)
    return label_B, x_BLC


def _logits_and_gradients(model, var: VAR, inputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    var.zero_grad(set_to_none=True)
    logits_BLV = model(*inputs)
    logits_BLV.square().mean().backward()
    return logits_BLV.detach(), {name: p.grad.clone() for name, p in var.named_parameters() if p.grad is not None}


def _assert_close(candidate, reference, forward_tolerance: float = 1e-5, gradient_tolerance: float = 1e-4):
    (candidate_BLV, candidate_grads), (reference_BLV, reference_grads) = candidate, reference
    assert (candidate_BLV - reference_BLV).abs().max() < forward_tolerance * reference_BLV.abs().max()
    assert candidate_grads.keys() == reference_grads.keys() and reference_grads
    for name, reference_grad in reference_grads.items():
        difference = (candidate_grads[name] - reference_grad).abs().max()
        assert difference <= gradient_tolerance * reference_grad.abs().max() + 1e-8, name


@PATCH_NUMS_CASES
def test_prefixes_are_exactly_the_keys_the_mask_allows(patch_nums):
    """Row by row, the additive bias is 0 on the scale's key prefix [0, end) and -inf after it."""
    var = VAR(VARConfig.debug(patch_nums=patch_nums))
    prefixes = var._scale_prefixes
    assert prefixes == ScalePrefixes(tuple(scale_boundaries(patch_nums)))
    bias_LL = block_causal_bias(patch_nums)[0, 0]
    assert prefixes.bounds[0][0] == 0 and prefixes.bounds[-1][1] == bias_LL.shape[0] == var.L
    for (begin, end), pn in zip(prefixes.bounds, patch_nums, strict=True):
        assert end - begin == pn * pn
        assert torch.all(bias_LL[begin:end, :end] == 0)
        assert torch.all(bias_LL[begin:end, end:] == -math.inf)


@PATCH_NUMS_CASES
def test_kernel_equals_masked_sdpa_on_strided_inputs_with_their_gradients(patch_nums):
    """At the function: q, k, v as the block makes them (strided views of one qkv tensor)."""
    torch.manual_seed(2)
    prefixes = ScalePrefixes(tuple(scale_boundaries(patch_nums)))
    L = prefixes.bounds[-1][1]
    qkv_BL3Hc = torch.randn(2, L, 3, 4, 16, dtype=torch.float64, requires_grad=True)
    weights_BHLc = torch.randn(2, 4, L, 16, dtype=torch.float64)
    results = []
    for mask in (block_causal_bias(patch_nums).double(), prefixes):
        q_BHLc, k_BHLc, v_BHLc = qkv_BL3Hc.permute(2, 0, 3, 1, 4).unbind(0)
        out_BHLc = attend(q_BHLc, k_BHLc, v_BHLc, mask, scale=0.3)
        (gradient,) = torch.autograd.grad((out_BHLc * weights_BHLc).sum(), qkv_BL3Hc)
        results.append((out_BHLc.detach(), gradient))
    (reference_BHLc, reference_grad), (scalewise_BHLc, scalewise_grad) = results
    assert scalewise_BHLc.shape == reference_BHLc.shape
    torch.testing.assert_close(scalewise_BHLc, reference_BHLc, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(scalewise_grad, reference_grad, rtol=1e-12, atol=1e-12)


@PATCH_NUMS_CASES
@L2_NORM_CASES
def test_training_forward_and_backward_equal_masked_sdpa(patch_nums, attn_l2_norm):
    """The whole model in float32, batch 3: logits and every parameter's gradient."""
    var = _tiny_var(patch_nums, attn_l2_norm)
    inputs = _inputs(var)
    reference = _logits_and_gradients(var, var, inputs)
    var.use_attention_kernel("scalewise")
    _assert_close(_logits_and_gradients(var, var, inputs), reference)


def test_activation_checkpointing_gives_the_same_gradients():
    var = _tiny_var(PATCH_NUMS_256, attn_l2_norm=True)
    inputs = _inputs(var, batch=2)
    reference = _logits_and_gradients(var, var, inputs)
    var.use_attention_kernel("scalewise")
    var.use_activation_checkpointing(True)
    _assert_close(_logits_and_gradients(var, var, inputs), reference)


def test_kv_cached_sampling_is_unchanged(tiny_var):
    """Sampling runs the KV cache, which passes no mask: the kernel choice must not reach it."""
    expected = tiny_var.generate([1, 2], cfg=1.5, top_k=10, top_p=0.9, seed=5)
    tiny_var.use_attention_kernel("scalewise")
    assert torch.equal(tiny_var.generate([1, 2], cfg=1.5, top_k=10, top_p=0.9, seed=5), expected)


def test_meta_device_forward_takes_the_bias():
    """Shape-only dry runs on the meta device keep the additive bias (shapes do not depend on the kernel)."""
    with torch.device("meta"):
        var = VAR(VARConfig.debug())
    var.use_attention_kernel("scalewise")
    label_B = torch.zeros(2, dtype=torch.long, device="meta")
    x_BLC = torch.zeros(2, var.L - var.first_l, var.config.latent_channels, device="meta")
    assert var(label_B, x_BLC).shape == (2, var.L, var.config.codebook_size)


@pytest.mark.slow
def test_compiled_scalewise_equals_eager_masked_sdpa():
    """torch.compile unrolls the per-scale loop into the graph; logits and gradients equal the
    eager masked SDPA. Slow: inductor compiles forward and backward (~40 s of CPU cold)."""
    var = _tiny_var((1, 2, 4), attn_l2_norm=True, depth=1)
    inputs = _inputs(var, batch=2)
    reference = _logits_and_gradients(var, var, inputs)
    var.use_attention_kernel("scalewise")
    _assert_close(_logits_and_gradients(torch.compile(var), var, inputs), reference)
