"""Released-format checkpoints: strict loading of the manifest, round trips, clear errors."""

from __future__ import annotations

import pytest
import torch

from var_model import VAR, CheckpointError, VARConfig, load_official, save_official
from var_model.official import official_state_dicts


def _meta_state(shapes: dict) -> dict:
    return {
        key: torch.empty(shape, device="meta", dtype=torch.long if key == "lvl_1L" else torch.float32)
        for key, shape in shapes.items()
    }


def test_manifest_loads_strictly_and_round_trips(manifest):
    var_shapes, vae_shapes = manifest["var_d16"], manifest["vae_ch160v4096z32"]
    vqvae, var = load_official(_meta_state(var_shapes), _meta_state(vae_shapes), device="meta")
    assert (var.config.depth, var.config.width, var.config.num_heads, var.config.num_classes) == (16, 1024, 16, 1000)
    assert (vqvae.config.channels, vqvae.config.codebook_size, vqvae.config.latent_channels) == (160, 4096, 32)
    assert vqvae.config.channel_multipliers == (1, 1, 2, 2, 4) and vqvae.config.share_quant_resi == 4
    var_state, vae_state = official_state_dicts(vqvae, var)
    assert list(var_state) == list(var_shapes) and list(vae_state) == list(vae_shapes)
    assert {k: list(v.shape) for k, v in var_state.items()} == var_shapes
    assert {k: list(v.shape) for k, v in vae_state.items()} == vae_shapes


def test_manifest_with_a_mis_shaped_and_a_missing_key(manifest):
    var_state = _meta_state(manifest["var_d16"])
    var_state["blocks.3.ffn.fc2.weight"] = torch.empty(1024, 4095, device="meta")
    del var_state["blocks.2.attn.zero_k_bias"]  # buffers are checked too
    with pytest.raises(CheckpointError) as error:
        load_official(var_state, _meta_state(manifest["vae_ch160v4096z32"]), device="meta")
    message = str(error.value)
    assert "blocks.2.attn.zero_k_bias" in message
    assert "blocks.3.ffn.fc2.weight: checkpoint shape (1024, 4095) vs model shape (1024, 4096)" in message


def test_tiny_round_trip_through_files(tmp_path, tiny_var, tiny_vqvae, tiny_images):
    save_official(tiny_vqvae, tiny_var, tmp_path / "var.pth", tmp_path / "vae.pth")
    vqvae, var = load_official(tmp_path / "var.pth", tmp_path / "vae.pth", patch_nums=(1, 2, 4))
    assert var.config.depth == 2 and var.config.num_classes == 10 and vqvae.config.image_size == 32
    indices = tiny_vqvae.encode_indices(tiny_images)
    assert all(torch.equal(a, b) for a, b in zip(vqvae.encode_indices(tiny_images), indices, strict=True))
    x_BLC = vqvae.teacher_forcing_input(indices)
    tiny_var.eval()
    labels = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        assert torch.equal(var(labels, x_BLC), tiny_var(labels, x_BLC))
    assert var.vqvae is vqvae


def test_missing_key_needed_for_inference(tiny_var, tiny_vqvae):
    var_state, vae_state = official_state_dicts(tiny_vqvae, tiny_var)
    del var_state["class_emb.weight"]
    with pytest.raises(CheckpointError, match="missing key 'class_emb.weight'"):
        load_official(var_state, vae_state, patch_nums=(1, 2, 4))


def test_unexpected_key_and_wrong_patch_nums(tiny_var, tiny_vqvae):
    var_state, vae_state = official_state_dicts(tiny_vqvae, tiny_var)
    with pytest.raises(CheckpointError, match="pos_1LC.*patch_nums"):
        load_official(var_state, vae_state)  # 256px scales for a 3-scale checkpoint
    var_state["blocks.0.attn.extra"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"unexpected keys \['blocks.0.attn.extra'\]"):
        load_official(var_state, vae_state, patch_nums=(1, 2, 4))


def test_pickled_objects_are_refused(tmp_path, tiny_var, tiny_vqvae):
    path = tmp_path / "evil.pth"
    torch.save({"config": VARConfig.debug()}, path)  # a dataclass needs unpickling of code
    _, vae_state = official_state_dicts(tiny_vqvae, tiny_var)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_official(path, vae_state, patch_nums=(1, 2, 4))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_official(tmp_path / "nope.pth", vae_state, patch_nums=(1, 2, 4))


def test_loaded_models_are_trainable_and_independent(tiny_var, tiny_vqvae):
    var_state, vae_state = official_state_dicts(tiny_vqvae, tiny_var)
    vqvae, var = load_official(var_state, vae_state, patch_nums=(1, 2, 4))
    assert isinstance(var, VAR)
    assert all(p.requires_grad for p in var.parameters())
    # no storage shared with the source model: training one must not move the other
    with torch.no_grad():
        var.pos_1LC.add_(1.0)
        vqvae.quantize.embedding.weight.add_(1.0)
    assert not torch.equal(var.pos_1LC, tiny_var.pos_1LC)
    assert not torch.equal(vqvae.quantize.embedding.weight, tiny_vqvae.quantize.embedding.weight)


def test_load_official_vqvae_alone(tmp_path, tiny_var, tiny_vqvae, tiny_images):
    from var_model.official import load_official_vqvae

    save_official(tiny_vqvae, tiny_var, tmp_path / "var.pth", tmp_path / "vae.pth")
    vqvae = load_official_vqvae(tmp_path / "vae.pth", patch_nums=(1, 2, 4))
    assert vqvae.config == tiny_vqvae.config
    assert all(
        torch.equal(a, b)
        for a, b in zip(vqvae.encode_indices(tiny_images), tiny_vqvae.encode_indices(tiny_images), strict=True)
    )
