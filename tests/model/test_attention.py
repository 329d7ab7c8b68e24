"""Attention kernels: FlexAttention equals SDPA, the BlockMask is the block-causal mask and is
built once, bad kernel names and untrainable devices are clear errors, and a compiled training
forward equals eager."""

from __future__ import annotations

import pytest
import torch

from var_model import VAR, VARConfig
from var_model.attention import (
    ATTENTION_KERNELS,
    BlockMaskCache,
    default_attention_kernel,
    flex_trains_on,
)
from var_model.config import PATCH_NUMS_256
from var_model.errors import ConfigError
from var_model.var import block_causal_bias, scale_ids

DEBUG_PATCH_NUMS = (1, 2, 3, 4, 6, 8)


def _tiny_var(patch_nums, attn_l2_norm: bool, **fields) -> VAR:
    torch.manual_seed(0)
    # large AdaLN gamma and head init so that attention visibly moves the logits
    config = VARConfig.debug(
        patch_nums=patch_nums, attn_l2_norm=attn_l2_norm, init_adaln_gamma=0.5, init_head=1.0, **fields
    )
    return VAR(config)


def _inputs(var: VAR, batch: int = 3, device: str = "cpu"):
    generator = torch.Generator().manual_seed(1)
    config = var.config
    x_BLC = torch.randn(
        batch, config.sequence_length - config.first_length, config.latent_channels, generator=generator
    )
    label_B = torch.randint(0, config.num_classes, (batch,), generator=generator)
    return label_B.to(device), x_BLC.to(device)


def test_unknown_attention_kernel_names_field_value_and_allowed():
    var = VAR(VARConfig.debug())
    with pytest.raises(ConfigError, match=r"attention='xformers'.*'sdpa', 'scalewise', 'flex'"):
        var.use_attention_kernel("xformers")
    assert var.attention_kernel == "sdpa"


def test_default_kernels_are_known_and_trainable():
    for device_type in ("cpu", "cuda", "mps"):
        kernel = default_attention_kernel(device_type)
        assert kernel in ATTENTION_KERNELS
        assert kernel != "flex" or flex_trains_on(device_type)
    assert default_attention_kernel("cpu") == "sdpa"  # eager: the CPU default
    assert default_attention_kernel("cpu", compiled=True) == "scalewise"
    assert default_attention_kernel("cuda") == "flex"
    assert default_attention_kernel("mps") == "sdpa"


def test_block_mask_allows_exactly_the_block_causal_pairs():
    ids_L = scale_ids(PATCH_NUMS_256)
    block_mask = BlockMaskCache(block_size=64).get(ids_L)
    L = ids_L.shape[0]
    q_index, kv_index = torch.arange(L).view(L, 1), torch.arange(L).view(1, L)
    allowed_LL = block_mask.mask_mod(torch.tensor(0), torch.tensor(0), q_index, kv_index)
    assert torch.equal(allowed_LL, block_causal_bias(PATCH_NUMS_256)[0, 0] == 0)
    assert block_mask.shape[-2:] == (L, L)


def test_block_mask_is_built_once_per_device():
    cache = BlockMaskCache()
    ids_L = scale_ids(DEBUG_PATCH_NUMS)
    first = cache.get(ids_L)
    assert cache.get(ids_L.clone()) is first


def test_flex_training_forward_on_cpu_is_a_clear_error():
    var = _tiny_var(DEBUG_PATCH_NUMS, attn_l2_norm=True)
    var.use_attention_kernel("flex")
    with pytest.raises(ConfigError, match=r"attention='flex' cannot train on cpu.*'sdpa'"):
        var(*_inputs(var))


def test_execution_choices_stay_out_of_state_dict_and_config():
    plain, chosen = _tiny_var(DEBUG_PATCH_NUMS, True), _tiny_var(DEBUG_PATCH_NUMS, True)
    chosen.use_attention_kernel("flex")
    chosen.use_activation_checkpointing(True)
    assert list(chosen.state_dict()) == list(plain.state_dict())
    assert chosen.config == plain.config
    fresh = _tiny_var(DEBUG_PATCH_NUMS, True)
    fresh.load_state_dict(chosen.state_dict())  # strict: no extra or missing keys
    assert fresh.attention_kernel == "sdpa" and not fresh.activation_checkpointing


def _flex_matches_sdpa_forward(patch_nums, attn_l2_norm):
    var = _tiny_var(patch_nums, attn_l2_norm).eval()
    inputs = _inputs(var)
    with torch.no_grad():
        reference_BLV = var(*inputs)
        var.use_attention_kernel("flex")
        flex_BLV = var(*inputs)
    assert flex_BLV.shape == reference_BLV.shape
    assert (flex_BLV - reference_BLV).abs().max() < 1e-5 * reference_BLV.abs().max()


def test_flex_forward_equals_sdpa_on_cpu():
    """One case in the default suite (compiling flex_attention on CPU takes ~20 s cold)."""
    _flex_matches_sdpa_forward(DEBUG_PATCH_NUMS, attn_l2_norm=True)


@pytest.mark.slow
@pytest.mark.parametrize("patch_nums", [DEBUG_PATCH_NUMS, PATCH_NUMS_256], ids=["debug", "256px"])
@pytest.mark.parametrize("attn_l2_norm", [True, False], ids=["l2norm", "plain"])
def test_flex_forward_equals_sdpa_on_cpu_all_cases(patch_nums, attn_l2_norm):
    _flex_matches_sdpa_forward(patch_nums, attn_l2_norm)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("patch_nums", [DEBUG_PATCH_NUMS, PATCH_NUMS_256], ids=["debug", "256px"])
@pytest.mark.parametrize("attn_l2_norm", [True, False], ids=["l2norm", "plain"])
def test_flex_forward_and_backward_equal_sdpa_on_cuda(patch_nums, attn_l2_norm, monkeypatch):
    """The training path: FlexAttention has a backward on CUDA (not on CPU in torch 2.13)."""
    # true float32 matmuls (no TF32), so the tolerance can be tight
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    var = _tiny_var(patch_nums, attn_l2_norm, drop_path_rate=0.0, class_dropout=0.0).cuda()
    inputs = _inputs(var, device="cuda")
    gradients = {}
    outputs = {}
    for kernel in ("sdpa", "flex"):
        var.use_attention_kernel(kernel)
        var.zero_grad(set_to_none=True)
        outputs[kernel] = var(*inputs)
        outputs[kernel].square().mean().backward()
        gradients[kernel] = {name: p.grad.clone() for name, p in var.named_parameters() if p.grad is not None}
    reference = outputs["sdpa"]
    assert (outputs["flex"] - reference).abs().max() < 1e-5 * reference.abs().max()
    assert gradients["flex"].keys() == gradients["sdpa"].keys()
    for name, reference_grad in gradients["sdpa"].items():
        difference = (gradients["flex"][name] - reference_grad).abs().max()
        assert difference <= 1e-4 * reference_grad.abs().max() + 1e-7, name


@pytest.mark.slow
def test_compiled_training_forward_and_backward_equal_eager():
    """torch.compile of the training forward (train mode; no random draws, which compiled code
    takes from another generator) equals eager in logits and in every gradient. Slow: inductor
    compiles the forward and backward graphs (~40 s of CPU cold, at depth 1)."""
    var = _tiny_var((1, 2, 4), attn_l2_norm=True, depth=1, drop_path_rate=0.0, class_dropout=0.0).train()
    inputs = _inputs(var, batch=2)
    results = []
    for model in (var, torch.compile(var)):
        var.zero_grad(set_to_none=True)
        logits_BLV = model(*inputs)
        logits_BLV.square().mean().backward()
        results.append((logits_BLV.detach(), {n: p.grad.clone() for n, p in var.named_parameters()}))
    (eager_BLV, eager_grads), (compiled_BLV, compiled_grads) = results
    assert (compiled_BLV - eager_BLV).abs().max() < 1e-5 * eager_BLV.abs().max()
    for name, eager_grad in eager_grads.items():
        assert (compiled_grads[name] - eager_grad).abs().max() <= 1e-4 * eager_grad.abs().max() + 1e-8, name


def test_importing_the_model_does_not_load_the_compiler():
    """torch.compile at import time loads dynamo and inductor: 4-5 s of every Ray worker's and
    every CLI command's start-up, for a kernel only "flex" models use (compiled on first use)."""
    import subprocess
    import sys

    code = "import sys, var_model, var_model.attention, var_model.training; print('torch._dynamo' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "False"
