"""Activation checkpointing: the same gradients as without it (random drop-path and class
dropout included), fewer saved activations, and no effect without gradients."""

from __future__ import annotations

import pytest
import torch

from var_model import VAR, VARConfig
from var_model.errors import ConfigError
from var_model.generation import cached_teacher_forcing_logits


def _var(drop_path_rate: float, class_dropout: float) -> VAR:
    torch.manual_seed(0)
    return VAR(
        VARConfig.debug(
            depth=3, drop_path_rate=drop_path_rate, class_dropout=class_dropout, init_adaln_gamma=0.5, init_head=1.0
        )
    ).train()


def _inputs(var: VAR, batch: int = 4):
    generator = torch.Generator().manual_seed(1)
    config = var.config
    x_BLC = torch.randn(
        batch, config.sequence_length - config.first_length, config.latent_channels, generator=generator
    )
    return torch.randint(0, config.num_classes, (batch,), generator=generator), x_BLC


def _loss_and_gradients(var: VAR, checkpointing: bool, seed: int = 5):
    var.use_activation_checkpointing(checkpointing)
    var.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same class-dropout and drop-path draws in both runs
    loss = var(*_inputs(var)).square().mean()
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in var.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "drop_path_rate, class_dropout", [(0.0, 0.0), (0.3, 0.5)], ids=["deterministic", "random-drops"]
)
def test_checkpointing_gives_the_same_gradients(drop_path_rate, class_dropout):
    var = _var(drop_path_rate, class_dropout)
    loss, gradients = _loss_and_gradients(var, checkpointing=False)
    checkpointed_loss, checkpointed = _loss_and_gradients(var, checkpointing=True)
    assert torch.equal(checkpointed_loss, loss)
    assert checkpointed.keys() == gradients.keys() and len(gradients) == len(list(var.parameters()))
    for name, gradient in gradients.items():
        assert (checkpointed[name] - gradient).abs().max() <= 1e-6 * gradient.abs().max(), name


def test_random_drops_do_change_the_gradients():
    """Guards the test above: with other draws, drop-path and class dropout give other
    gradients, so equality there means the recompute replayed the same draws."""
    var = _var(0.3, 0.5)
    _, first = _loss_and_gradients(var, checkpointing=True, seed=5)
    _, second = _loss_and_gradients(var, checkpointing=True, seed=6)
    assert any(not torch.allclose(first[name], second[name]) for name in first)


def _saved_bytes(var: VAR) -> int:
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        var(*_inputs(var)).sum().backward()
    return sum(saved)


def test_checkpointing_keeps_fewer_activations():
    var = _var(0.0, 0.0)
    plain = _saved_bytes(var)
    var.use_activation_checkpointing(True)
    checkpointed = _saved_bytes(var)
    assert checkpointed < 0.5 * plain


def test_checkpointing_changes_nothing_without_gradients_or_with_the_kv_cache(tiny_var, tiny_vqvae, tiny_images):
    var = tiny_var.eval()
    indices = tiny_vqvae.encode_indices(tiny_images)
    label_B, x_BLC = torch.tensor([0, 1, 2, 3]), tiny_vqvae.teacher_forcing_input(indices)
    with torch.no_grad():
        reference_BLV = var(label_B, x_BLC)
        cached_reference = cached_teacher_forcing_logits(var, label_B, indices)
        var.use_activation_checkpointing(True)
        assert torch.equal(var(label_B, x_BLC), reference_BLV)
    # the KV cache grows on every block call, so a recompute must never run there
    cached = cached_teacher_forcing_logits(var, label_B, indices)
    for logits_BlV, reference_BlV in zip(cached, cached_reference, strict=True):
        assert torch.allclose(logits_BlV, reference_BlV, rtol=0, atol=1e-6)


def test_checkpointing_switch_takes_a_bool():
    with pytest.raises(ConfigError, match="activation_checkpointing='blocks'"):
        VAR(VARConfig.debug()).use_activation_checkpointing("blocks")
