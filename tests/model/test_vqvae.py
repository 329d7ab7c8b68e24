"""The multi-scale VQVAE: shapes, phi map, quantizer training signal, input errors."""

from __future__ import annotations

import pytest
import torch

from var_model import VQVAE, DataError, VQVAEConfig
from var_model.vqvae import phi_index_map


def test_phi_index_map_for_ten_scales():
    assert phi_index_map(10, 4) == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert phi_index_map(3, 1) == [0, 0, 0]
    assert phi_index_map(3, 0) == [0, 1, 2]


def test_encode_decode_shapes(tiny_vqvae, tiny_images):
    indices = tiny_vqvae.encode_indices(tiny_images)
    assert [tuple(i.shape) for i in indices] == [(4, 1), (4, 4), (4, 16)]
    assert all(i.dtype == torch.int64 and int(i.max()) < 64 and int(i.min()) >= 0 for i in indices)
    images = tiny_vqvae.decode_indices(indices)
    assert images.shape == (4, 3, 32, 32)
    assert float(images.min()) >= -1 and float(images.max()) <= 1
    x_BLC = tiny_vqvae.teacher_forcing_input(indices)
    assert x_BLC.shape == (4, 4 + 16, 8)  # L - pn0^2 = 21 - 1


def test_teacher_forcing_input_is_downsampled_partial_sum(tiny_vqvae, tiny_images):
    """The last teacher input equals area-down(f_hat of all scales but the last)."""
    indices = tiny_vqvae.encode_indices(tiny_images)
    partial = tiny_vqvae.quantize.indices_to_latent(indices[:-1])
    expected = torch.nn.functional.interpolate(partial, size=(4, 4), mode="area").flatten(2).transpose(1, 2)
    assert torch.allclose(tiny_vqvae.teacher_forcing_input(indices)[:, 4:], expected, atol=1e-6)


def test_residual_quantization_reduces_error(tiny_vqvae, tiny_images):
    """Each added scale brings f_hat closer to the latent (residual quantization works)."""
    quantizer = tiny_vqvae.quantize
    with torch.no_grad():
        # a codebook drawn from the latents themselves, so that nearest codes are meaningful
        f = tiny_vqvae.encode_latent(tiny_images)
        quantizer.embedding.weight.copy_(f.permute(0, 2, 3, 1).reshape(-1, 8)[torch.randperm(64)])
        indices = tiny_vqvae.encode_indices(tiny_images)
        errors = [float((quantizer.indices_to_latent(indices[: k + 1]) - f).square().mean()) for k in range(3)]
    assert errors[2] < errors[0]


def test_training_forward_straight_through(tiny_images):
    torch.manual_seed(0)
    vqvae = VQVAE(VQVAEConfig.debug()).train()
    reconstruction, quantizer_loss, usage = vqvae(tiny_images)
    assert reconstruction.shape == tiny_images.shape
    assert usage.shape == (3,) and bool(((usage > 0) & (usage <= 1)).all())
    (reconstruction.square().mean() + quantizer_loss).backward()
    # gradient reaches the encoder through the straight-through estimator, and the codebook
    # and phi convs through the quantizer loss
    assert vqvae.encoder.conv_in.weight.grad.abs().sum() > 0
    assert vqvae.quantize.embedding.weight.grad.abs().sum() > 0
    assert vqvae.quantize.quant_resi.qresi_ls[0].weight.grad.abs().sum() > 0
    assert float(vqvae.quantize.ema_vocab_hit_SV.sum()) > 0


def test_wrong_image_size_is_a_clear_error(tiny_vqvae):
    with pytest.raises(DataError, match=r"image size \(64, 64\).*32x32"):
        tiny_vqvae.encode_indices(torch.zeros(1, 3, 64, 64))
    with pytest.raises(DataError, match="images must be"):
        tiny_vqvae.encode_indices(torch.zeros(3, 32, 32))


def test_bad_indices_are_clear_errors(tiny_vqvae):
    good = [
        torch.zeros(2, 1, dtype=torch.long),
        torch.zeros(2, 4, dtype=torch.long),
        torch.zeros(2, 16, dtype=torch.long),
    ]
    with pytest.raises(DataError, match=r"indices\[1\] must be .*\(B, 4\)"):
        tiny_vqvae.decode_indices([good[0], torch.zeros(2, 9, dtype=torch.long), good[2]])
    with pytest.raises(DataError, match=r"outside \[0, 64\)"):
        tiny_vqvae.decode_indices([good[0], good[1], torch.full((2, 16), 64)])
    with pytest.raises(DataError, match="list of 3"):
        tiny_vqvae.decode_indices(good[:2])


def test_release_sized_teacher_forcing_input_shape():
    """256px: (B, L - 1, Cvae) = (B, 679, 32); 512px scales give L = 2240 (quantizer alone: cheap)."""
    from var_model.config import PATCH_NUMS_512
    from var_model.vqvae import MultiScaleQuantizer

    torch.manual_seed(0)
    quantizer = MultiScaleQuantizer(VQVAEConfig())
    indices = [torch.randint(0, 4096, (2, pn * pn)) for pn in quantizer.patch_nums]
    assert quantizer.teacher_forcing_input(indices).shape == (2, 679, 32)
    assert quantizer.indices_to_latent(indices).shape == (2, 32, 16, 16)
    assert VQVAEConfig(image_size=512, patch_nums=PATCH_NUMS_512).sequence_length == 2240
