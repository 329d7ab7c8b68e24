"""The VAR transformer: forward contract, mask, init loss, overfitting, KV-cache exactness."""

from __future__ import annotations

import math

import pytest
import torch

from var_model import VAR, DataError, VARConfig
from var_model.generation import cached_teacher_forcing_logits
from var_model.var import block_causal_bias, loss_per_token


def test_forward_shape_and_dtype(tiny_var, tiny_vqvae, tiny_images):
    indices = tiny_vqvae.encode_indices(tiny_images)
    logits_BLV = tiny_var(torch.tensor([0, 1, 2, 10]), tiny_vqvae.teacher_forcing_input(indices))
    assert logits_BLV.shape == (4, 21, 64) and logits_BLV.dtype == torch.float32


def test_vqvae_is_not_part_of_the_var_state(tiny_var):
    keys = list(tiny_var.state_dict())
    assert not any(k.startswith(("vqvae", "encoder", "decoder", "quantize")) for k in keys)
    assert {"lvl_1L", "attn_bias_for_masking", "blocks.0.attn.zero_k_bias"} <= set(keys)


def test_block_causal_mask():
    bias = block_causal_bias((1, 2))[0, 0]
    allowed = bias == 0
    expected = torch.tensor([[1, 0, 0, 0, 0]] + [[1, 1, 1, 1, 1]] * 4, dtype=torch.bool)
    assert torch.equal(allowed, expected)
    assert bool(torch.isinf(bias[~allowed]).all())


def test_future_scales_do_not_change_past_logits(tiny_var, tiny_vqvae, tiny_images):
    tiny_var.eval()
    indices = tiny_vqvae.encode_indices(tiny_images)
    x_BLC = tiny_vqvae.teacher_forcing_input(indices)
    labels = torch.tensor([1, 2, 3, 4])
    changed = x_BLC.clone()
    changed[:, 4:] += 1.0  # the input of the last scale only
    with torch.no_grad():
        before, after = tiny_var(labels, x_BLC), tiny_var(labels, changed)
    assert torch.allclose(before[:, :5], after[:, :5], atol=1e-6)
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_kv_cache_logits_equal_teacher_forcing(tiny_vqvae, tiny_images):
    # larger AdaLN gammas and head so that the blocks really matter in this check
    torch.manual_seed(3)
    var = VAR(VARConfig.debug(init_adaln_gamma=0.5, init_head=1.0), vqvae=tiny_vqvae).eval()
    indices = tiny_vqvae.encode_indices(tiny_images)
    labels = torch.tensor([1, 2, 3, 10])
    with torch.no_grad():
        teacher = var(labels, tiny_vqvae.teacher_forcing_input(indices))
    cached = cached_teacher_forcing_logits(var, labels, indices)
    assert [c.shape[1] for c in cached] == [1, 4, 16]
    assert torch.allclose(cached[-1], teacher[:, 5:], atol=1e-5, rtol=1e-5)  # the last scale
    assert torch.allclose(torch.cat(cached, dim=1), teacher, atol=1e-5, rtol=1e-5)
    assert teacher.std() > 0.1


def test_initial_loss_is_log_vocabulary():
    torch.manual_seed(0)
    config = VARConfig.debug(codebook_size=4096)
    var = VAR(config)
    x_BLC = torch.randn(8, config.sequence_length - 1, config.latent_channels)
    targets = torch.randint(0, 4096, (8, config.sequence_length))
    with torch.no_grad():
        loss = loss_per_token(var(torch.arange(8), x_BLC), targets).mean()
    assert abs(float(loss) - math.log(4096)) < 0.05


def test_tiny_model_overfits_one_batch(tiny_vqvae, tiny_images):
    torch.manual_seed(0)
    var = VAR(VARConfig.debug(class_dropout=0.0, drop_path_rate=0.0), vqvae=tiny_vqvae)
    indices = tiny_vqvae.encode_indices(tiny_images)
    x_BLC, targets_BL = tiny_vqvae.teacher_forcing_input(indices), torch.cat(indices, dim=1)
    labels = torch.tensor([0, 1, 2, 3])
    optimizer = torch.optim.AdamW(var.parameters(), lr=3e-3)
    first = None
    for _ in range(80):
        loss = loss_per_token(var(labels, x_BLC), targets_BL).mean()
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first > 4.0 and float(loss.detach()) < 0.5


def test_class_dropout_only_in_training(tiny_var, tiny_vqvae, tiny_images):
    indices = tiny_vqvae.encode_indices(tiny_images)
    x_BLC = tiny_vqvae.teacher_forcing_input(indices)
    labels = torch.tensor([1, 2, 3, 4])
    tiny_var.eval()
    with torch.no_grad():
        assert torch.equal(tiny_var(labels, x_BLC), tiny_var(labels, x_BLC))


def test_labels_out_of_range_and_bad_shapes(tiny_var):
    x_BLC = torch.zeros(2, 20, 8)
    with pytest.raises(DataError, match=r"labels out of range: .*max 11.*allowed \[0, 10\]"):
        tiny_var(torch.tensor([0, 11]), x_BLC)
    with pytest.raises(DataError, match="min -1"):
        tiny_var(torch.tensor([-1, 0]), x_BLC)
    with pytest.raises(DataError, match=r"\(B, L - pn0\^2, Cvae\) = \(2, 20, 8\)"):
        tiny_var(torch.tensor([0, 1]), torch.zeros(2, 21, 8))
    with pytest.raises(DataError, match="1-D integer"):
        tiny_var(torch.tensor([0.0, 1.0]), x_BLC)


def test_shared_adaln_forward_and_backward():
    torch.manual_seed(0)
    config = VARConfig.debug(shared_adaln=True)
    var = VAR(config)
    logits = var(torch.tensor([0, 1]), torch.randn(2, 20, 8))
    logits.mean().backward()
    assert var.shared_ada_lin[1].weight.grad is not None and var.blocks[0].ada_gss.grad is not None
