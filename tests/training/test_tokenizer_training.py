import numpy as np
import pytest
import torch

from var_model.config import VQVAEConfig
from var_model.data import DataConfig, ImageSource, images_to_model_input
from var_model.errors import ConfigError
from var_model.tokenizer import (
    TokenizerStageConfig,
    TokenizerTrainingConfig,
    reseed_dead_codes,
    run_tokenizer_stage,
    train_tokenizer,
)
from var_model.vqvae import VQVAE


def test_training_lowers_reconstruction_error_and_reports_usage_per_scale():
    torch.manual_seed(0)
    source = ImageSource(DataConfig(train_images=64, test_images=16, num_classes=4))
    vqvae = VQVAE(VQVAEConfig.debug())
    config = TokenizerTrainingConfig(
        steps=6, batch_size=4, lr=2e-3, log_every=3, dead_code_every=3, eval_images=16, codebook_init_from_data=False
    )
    report = train_tokenizer(vqvae, source, config)
    assert len(report.codebook_usage) == 3 and all(0 < u <= 1 for u in report.codebook_usage)
    assert report.history[-1]["reconstruction_mse"] < report.history[0]["reconstruction_mse"]
    assert report.reseeded_codes > 0  # a fresh codebook has dead entries
    assert report.psnr == pytest.approx(10 * np.log10(4 / report.reconstruction_mse))


def test_codebook_initialised_from_data_is_used_more_than_a_random_one():
    source = ImageSource(DataConfig(train_images=64, test_images=32, num_classes=4))
    usage = {}
    for from_data in (False, True):
        torch.manual_seed(0)
        config = TokenizerTrainingConfig(
            steps=1, batch_size=4, lr=1e-6, dead_code_every=0, eval_images=32, codebook_init_from_data=from_data
        )
        usage[from_data] = train_tokenizer(VQVAE(VQVAEConfig.debug()), source, config).codebook_usage_any_scale
    assert usage[True] > usage[False]


def test_reseeding_replaces_only_dead_codes_with_encoder_residuals():
    torch.manual_seed(0)
    vqvae = VQVAE(VQVAEConfig.debug())
    source = ImageSource(DataConfig(train_images=8, test_images=4, num_classes=2))
    images = images_to_model_input(source.arrays("train")[0])
    optimizer = torch.optim.Adam(vqvae.parameters())
    vqvae.quantize.ema_vocab_hit_SV.fill_(1.0)
    vqvae.quantize.ema_vocab_hit_SV[:, :5] = 0.0
    before = vqvae.quantize.embedding.weight.detach().clone()
    count = reseed_dead_codes(vqvae, images, optimizer, threshold=0.01, generator=np.random.default_rng(0))
    after = vqvae.quantize.embedding.weight.detach()
    assert count == 5
    assert not torch.equal(after[:5], before[:5]) and torch.equal(after[5:], before[5:])
    assert (vqvae.quantize.ema_vocab_hit_SV[:, :5] > 0.01).all()


def test_stage_reuses_its_tokenizer_and_cache(tiny_stage):
    config, first = tiny_stage
    second = run_tokenizer_stage(config)
    assert second.reused_tokenizer and second.reused_cache and second.cache_path == first.cache_path
    assert set(first.report) >= {"reconstruction_mse", "codebook_usage", "psnr"}
    assert first.baselines["unigram_test_loss_avg"] > 0


def test_stage_is_a_function_of_its_config(tiny_stage, tmp_path):
    """A fresh stage from the same config (new cache root, global RNG disturbed) trains the
    same tokenizer and so builds the same token cache: a study's tokens follow from its file."""
    import dataclasses

    config, first = tiny_stage
    torch.manual_seed(12345)
    again = run_tokenizer_stage(dataclasses.replace(config, cache_root=str(tmp_path)))
    assert not again.reused_tokenizer
    assert again.cache_key == first.cache_key


def test_stage_config_from_mapping_and_errors(tmp_path):
    config = TokenizerStageConfig.from_dict(
        {"data": {"train_images": 8}, "vqvae": "debug", "cache_root": str(tmp_path), "training": {"steps": 3}}
    )
    assert config.training.steps == 3 and config.vqvae == VQVAEConfig.debug()
    with pytest.raises(ConfigError, match="unknown tokenizer training keys"):
        TokenizerStageConfig.from_dict({"data": {}, "cache_root": "x", "training": {"stpes": 3}})
    with pytest.raises(ConfigError, match="image_size"):
        TokenizerStageConfig.from_dict({"data": {"resolution": 64}, "cache_root": "x"})
    with pytest.raises(ConfigError, match="vqvae_path"):
        TokenizerStageConfig.from_dict({"data": {}, "cache_root": "x", "kind": "load_official"})


def test_stage_loads_released_format_weights_and_reports_them(tmp_path):
    torch.manual_seed(0)
    released = VQVAE(VQVAEConfig.debug())
    torch.save(released.state_dict(), tmp_path / "vae.pth")
    config = TokenizerStageConfig.from_dict(
        {
            "data": {"train_images": 16, "test_images": 8, "num_classes": 2},
            "vqvae": "debug",
            "cache_root": str(tmp_path / "cache"),
            "kind": "load_official",
            "vqvae_path": str(tmp_path / "vae.pth"),
            "training": {"eval_images": 8},
            "device": "cpu",
        }
    )
    result = run_tokenizer_stage(config)
    from var_model.tokenizer import TokenCache

    loaded = TokenCache.open(result.cache_path).load_tokenizer()
    for name, tensor in released.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert len(result.report["codebook_usage"]) == 3 and result.report["reconstruction_mse"] > 0
