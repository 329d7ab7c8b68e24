import json
import math

import numpy as np
import pytest
import torch

from var_model.config import VQVAEConfig
from var_model.data import DataConfig, ImageSource, images_to_model_input
from var_model.errors import DataError
from var_model.tokenizer import TokenCache, build_token_cache, unigram_baselines
from var_model.vqvae import VQVAE

DATA = DataConfig(train_images=40, test_images=16, num_classes=4, seed=1)


@pytest.fixture(scope="module")
def vqvae():
    torch.manual_seed(0)
    return VQVAE(VQVAEConfig.debug()).eval()


@pytest.fixture
def built(vqvae, tmp_path):
    return build_token_cache(vqvae, DATA, tmp_path, batch_size=16)


def test_cache_holds_the_tokenizers_indices_and_labels(vqvae, built):
    cache = TokenCache.open(built.path)
    source = ImageSource(DATA)
    images, labels = source.arrays("test")
    expected = torch.cat(vqvae.encode_indices(images_to_model_input(images)), dim=1).numpy()
    assert cache.indices("test").shape == (16, 21) and cache.indices("test").dtype == np.int16
    assert np.array_equal(cache.indices("test"), expected)
    assert np.array_equal(cache.labels("test"), labels)
    assert cache.patch_nums == (1, 2, 4) and cache.num_classes == 4 and cache.images("train") == 40
    restored = cache.load_tokenizer()
    for name, tensor in vqvae.state_dict().items():
        assert torch.equal(restored.state_dict()[name], tensor), name


def test_same_tokenizer_and_data_reuse_the_cache(vqvae, built, tmp_path):
    again = build_token_cache(vqvae, DATA, tmp_path, batch_size=16)
    assert again.reused and again.path == built.path and again.key == built.key


def test_changed_tokenizer_or_data_builds_a_new_cache(vqvae, built, tmp_path):
    changed = VQVAE(VQVAEConfig.debug()).eval()
    changed.load_state_dict(vqvae.state_dict())
    with torch.no_grad():
        changed.quantize.embedding.weight[0] += 1.0
    by_tokenizer = build_token_cache(changed, DATA, tmp_path, batch_size=16)
    by_data = build_token_cache(
        vqvae, DataConfig(train_images=40, test_images=16, num_classes=4, seed=2), tmp_path, batch_size=16
    )
    assert not by_tokenizer.reused and not by_data.reused
    assert len({built.path, by_tokenizer.path, by_data.path}) == 3
    # the old cache is untouched: trials reading it are not disturbed
    TokenCache.open(built.path)


def test_corrupt_or_truncated_file_is_detected_and_rebuilt(vqvae, built, tmp_path):
    indices_file = built.path / "train_indices.npy"
    data = bytearray(indices_file.read_bytes())
    data[-1] ^= 0xFF
    indices_file.write_bytes(bytes(data))
    with pytest.raises(DataError, match="checksum"):
        TokenCache.open(built.path)
    indices_file.write_bytes(bytes(data[:-10]))
    with pytest.raises(DataError, match="truncated"):
        TokenCache.open(built.path, verify=False)
    rebuilt = build_token_cache(vqvae, DATA, tmp_path, batch_size=16)
    assert not rebuilt.reused and rebuilt.path == built.path
    TokenCache.open(rebuilt.path)
    assert any(path.name.startswith(f"{built.path.name}.corrupt-") for path in tmp_path.iterdir())


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not a token cache"):
        TokenCache.open(tmp_path)


def test_no_temporary_directories_are_left_behind(built, tmp_path):
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".building")]
    manifest = json.loads((built.path / "manifest.json").read_text())
    assert set(manifest["files"]) == {
        "tokenizer.pt",
        "train_indices.npy",
        "train_labels.npy",
        "test_indices.npy",
        "test_labels.npy",
    }


def test_unigram_baseline_matches_a_direct_computation(built):
    cache = TokenCache.open(built.path)
    train, test = np.asarray(cache.indices("train"), dtype=np.int64), np.asarray(cache.indices("test"), dtype=np.int64)
    counts = np.bincount(train.ravel(), minlength=64)
    probability = (counts + 1) / (counts.sum() + 64)
    expected = -np.mean(np.log(probability[test.ravel()]))
    expected_last = -np.mean(np.log(probability[test[:, 5:].ravel()]))
    baselines = unigram_baselines(cache)
    assert baselines["unigram_test_loss_avg"] == pytest.approx(expected)
    assert baselines["unigram_test_loss_last"] == pytest.approx(expected_last)
    assert baselines["per_scale_unigram_test_loss_avg"] <= baselines["unigram_test_loss_avg"] + 0.05
    assert 0 < baselines["unigram_train_entropy"] <= math.log(64)


def test_resolution_mismatch_is_refused(vqvae, tmp_path):
    with pytest.raises(DataError, match="resolution"):
        build_token_cache(vqvae, DataConfig(resolution=64, train_images=4, test_images=4), tmp_path)
