"""The FID / Inception Score path end to end, with no download: the test writes a random-weight
file of torch-fidelity's Inception-v3 architecture (its own building blocks, its own layer
names), then the study stage computes reference statistics from the test split and the floors,
and a VAR's samples get sample_fid and sample_inception_score.

`make install` installs torch-fidelity (with --no-deps: its Inception needs no torchvision, see
var_model/evaluation/inception.py), so this runs in `make test`; only an environment without
torch-fidelity at all skips it, and the error a user would get there is tested in
test_evaluation_metrics.py.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from var_model.config import VARConfig, VQVAEConfig
from var_model.data import DataConfig
from var_model.data.source import ImageSource
from var_model.errors import ConfigError, DataError
from var_model.evaluation import EvaluationConfig, SampleEvaluator, prepare_study_evaluation
from var_model.evaluation.inception import (
    InceptionExtractor,
    fidelity_inception_module,
    inception_reference_path,
    inception_score,
    read_reference,
)
from var_model.evaluation.study_stage import per_class_images
from var_model.files import file_sha256
from var_model.var import VAR
from var_model.vqvae import VQVAE

if importlib.util.find_spec("torch_fidelity") is None:
    pytest.skip("torch-fidelity is not installed here (make install installs it)", allow_module_level=True)


class RandomInception(nn.Module):
    """torch-fidelity's inception-v3-compat layers, named as its state dict names them."""

    def __init__(self):
        super().__init__()
        blocks = fidelity_inception_module()
        self.Conv2d_1a_3x3 = blocks.BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = blocks.BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = blocks.BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = blocks.BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = blocks.BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = blocks.InceptionA(192, pool_features=32)
        self.Mixed_5c = blocks.InceptionA(256, pool_features=64)
        self.Mixed_5d = blocks.InceptionA(288, pool_features=64)
        self.Mixed_6a = blocks.InceptionB(288)
        self.Mixed_6b = blocks.InceptionC(768, channels_7x7=128)
        self.Mixed_6c = blocks.InceptionC(768, channels_7x7=160)
        self.Mixed_6d = blocks.InceptionC(768, channels_7x7=160)
        self.Mixed_6e = blocks.InceptionC(768, channels_7x7=192)
        self.Mixed_7a = blocks.InceptionD(768)
        self.Mixed_7b = blocks.InceptionE_1(1280)
        self.Mixed_7c = blocks.InceptionE_2(2048)
        self.fc = nn.Linear(2048, 1008)


@pytest.fixture(scope="module")
def weights_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inception") / "random_inception.pth"
    torch.save(RandomInception().state_dict(), path)
    return path


def test_extractor_gives_pool_features_and_logits(weights_path):
    extractor = InceptionExtractor(weights_path)
    pool, logits = extractor(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert pool.shape == (2, 2048) and logits.shape == (2, 1008)


def test_a_file_that_is_not_inception_weights_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(ConfigError, match="is not an Inception-v3 state dict"):
        InceptionExtractor(path)


def test_a_file_that_is_not_a_state_dict_of_tensors_is_refused_unread(tmp_path):
    not_torch = tmp_path / "not_torch.pth"
    not_torch.write_bytes(b"these are not Inception weights")
    with pytest.raises(ConfigError, match="is not an Inception-v3 state dict"):
        InceptionExtractor(not_torch)
    # a pickle that holds an object: refused by the weights_only read, never unpickled by torch-fidelity
    pickled = tmp_path / "pickled.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": Unpicklable()}, pickled)
    with pytest.raises(ConfigError, match="is not an Inception-v3 state dict .*UnpicklingError"):
        InceptionExtractor(pickled)


class Unpicklable:
    def __reduce__(self):
        return (_fail_if_unpickled, ())


def _fail_if_unpickled():
    raise AssertionError("torch-fidelity unpickled a file that holds more than tensors")


@pytest.fixture
def no_download(monkeypatch):
    """Any download attempt fails the test (torch-fidelity downloads when no weights path is given)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")

    monkeypatch.setattr(fidelity_inception_module(), "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_fid_path_runs_end_to_end_without_a_download(weights_path, tmp_path, no_download):
    torch.manual_seed(0)
    # few images: each is a 299x299 Inception forward on a CPU (about 0.4 s)
    data = DataConfig(kind="synthetic", resolution=32, num_classes=2, train_images=8, test_images=8)
    source, cpu = ImageSource(data), torch.device("cpu")
    config = EvaluationConfig(samples_per_class=2, feature="inception", inception_weights=str(weights_path))
    vqvae = VQVAE(VQVAEConfig.debug())
    report = prepare_study_evaluation(config, source, vqvae, tmp_path, cpu)
    assert {"floor_real_sample_fid", "floor_reconstruction_sample_fid", "floor_real_sample_inception_score"} <= set(
        report
    )
    # the study's reference: the test split's pool features and their statistics
    reference = inception_reference_path(tmp_path, source.identity(), file_sha256(weights_path))
    (mu, sigma), reference_features = read_reference(reference)
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048) and reference_features.shape == (8, 2048)

    # the real floor is the Fréchet distance and IS of those images' own Inception outputs
    extractor = InceptionExtractor(weights_path)
    images_NHWC, _ = per_class_images(source, "train", 2)
    pool, logits = extractor(torch.from_numpy(images_NHWC).permute(0, 3, 1, 2).contiguous())
    assert report["floor_real_sample_fid"] == pytest.approx(
        _low_rank_frechet(pool.numpy(), reference_features), rel=1e-5
    )
    assert report["floor_real_sample_inception_score"] == pytest.approx(inception_score(logits), rel=1e-6)

    evaluator = SampleEvaluator.for_study(config, tmp_path, source.identity(), 2, cpu)
    var = VAR(VARConfig.for_vqvae(vqvae.config, num_classes=2, depth=1, width=32, num_heads=2), vqvae=vqvae)
    metrics = evaluator.evaluate(var)
    assert math.isfinite(metrics["sample_fid"]) and metrics["sample_fid"] >= 0
    assert metrics["sample_inception_score"] >= 1.0 - 1e-6
    assert evaluator.protocol()["sample_protocol_implementation"].startswith("torch-fidelity")


def _low_rank_frechet(first_ND: np.ndarray, second_MD: np.ndarray) -> float:
    """The Fréchet distance of two small feature sets, computed apart from evaluation/frechet.py:
    with S1 = A^T A and S2 = B^T B (centred, / sqrt(n - 1)), Tr((S1 S2)^(1/2)) is the nuclear norm
    of A B^T, a 4 x 8 matrix here instead of 2048 x 2048 ones."""
    first, second = first_ND.astype(np.float64), second_MD.astype(np.float64)
    a = (first - first.mean(0)) / np.sqrt(len(first) - 1)
    b = (second - second.mean(0)) / np.sqrt(len(second) - 1)
    trace_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    return float(np.sum((first.mean(0) - second.mean(0)) ** 2) + np.sum(a**2) + np.sum(b**2) - 2 * trace_sqrt)


def test_torchmetrics_imports_beside_the_inception_module():
    # torchmetrics imports torch-fidelity's Inception module when torch-fidelity is installed;
    # with the package loaded as fidelity_inception_module loads it, that import finds it
    fidelity_inception_module()
    from torchmetrics.image.fid import FrechetInceptionDistance

    assert FrechetInceptionDistance.__module__ == "torchmetrics.image.fid"


def test_the_study_stage_refuses_a_wrong_weights_file_before_computing_anything(tmp_path):
    weights = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, weights)
    data = DataConfig(kind="synthetic", resolution=32, num_classes=2, train_images=8, test_images=8)
    config = EvaluationConfig(samples_per_class=2, feature="inception", inception_weights=str(weights))
    with pytest.raises(ConfigError, match=r"evaluation.inception_weights .*other.pth' is not an Inception-v3"):
        prepare_study_evaluation(config, ImageSource(data), VQVAE(VQVAEConfig.debug()), tmp_path, torch.device("cpu"))
    assert not list(tmp_path.glob("inception-reference-*"))


def test_a_trials_evaluator_refuses_a_reference_without_mu_and_sigma(weights_path, tmp_path):
    reference = tmp_path / "reference.npz"
    np.savez(reference, features=np.zeros((4, 2048), dtype=np.float32))
    config = EvaluationConfig(
        samples_per_class=2, feature="inception", inception_weights=str(weights_path), reference=str(reference)
    )
    with pytest.raises(DataError, match=r"has no \['mu', 'sigma'\]"):
        SampleEvaluator.for_study(config, tmp_path, {"kind": "synthetic"}, 2, torch.device("cpu"))
