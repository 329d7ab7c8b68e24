"""CUDA paths: bf16 autocast training step, fused attention kernels, exact KV cache on GPU."""

from __future__ import annotations

import pytest
import torch

from var_model import VAR, VQVAE, VARConfig, VQVAEConfig
from var_model.generation import cached_teacher_forcing_logits
from var_model.var import loss_per_token

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _models():
    torch.manual_seed(0)
    vqvae = VQVAE(VQVAEConfig.debug()).cuda().eval()
    var = VAR(VARConfig.debug(init_adaln_gamma=0.5, init_head=1.0), vqvae=vqvae).cuda()
    images = torch.rand(4, 3, 32, 32, device="cuda") * 2 - 1
    return vqvae, var, images


def test_bf16_autocast_matches_float32():
    vqvae, var, images = _models()
    var.eval()
    indices = vqvae.encode_indices(images)
    x_BLC, labels = vqvae.teacher_forcing_input(indices), torch.tensor([0, 1, 2, 3], device="cuda")
    with torch.no_grad():
        reference = var(labels, x_BLC)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = var(labels, x_BLC)
    assert low.dtype == torch.float32
    assert (low - reference).abs().max() < 0.1 * reference.abs().max()


def test_bf16_training_step_has_finite_gradients():
    vqvae, var, images = _models()
    indices = vqvae.encode_indices(images)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = var(torch.tensor([0, 1, 2, 3], device="cuda"), vqvae.teacher_forcing_input(indices))
    loss_per_token(logits, torch.cat(indices, dim=1)).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in var.parameters() if p.grad is not None)


def test_kv_cache_exact_on_gpu():
    vqvae, var, images = _models()
    var.eval()
    indices = vqvae.encode_indices(images)
    labels = torch.tensor([0, 1, 2, 10], device="cuda")
    with torch.no_grad():
        teacher = var(labels, vqvae.teacher_forcing_input(indices))
    cached = torch.cat(cached_teacher_forcing_logits(var, labels, indices), dim=1)
    assert torch.allclose(cached, teacher, atol=1e-4, rtol=1e-4)
    images_out = var.generate([1, 2], seed=0)
    assert images_out.device.type == "cuda" and images_out.shape == (2, 3, 32, 32)
