"""The FID / Inception Score path end to end, with no download: the test writes a random-weight
file of torch-fidelity's Inception-v3 architecture (its own building blocks, its own layer
names), then the study stage computes reference statistics from the test split and the floors,
and a VAR's samples get sample_fid and sample_inception_score.

Needs torch-fidelity with a torchvision built for the installed torch (`.[inception]`); without
them the module is skipped, and the error a user would get is tested in
test_evaluation_metrics.py.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from var_model.config import VARConfig, VQVAEConfig
from var_model.data import DataConfig
from var_model.data.source import ImageSource
from var_model.errors import ConfigError
from var_model.evaluation import EvaluationConfig, SampleEvaluator, prepare_study_evaluation
from var_model.evaluation.inception import InceptionExtractor
from var_model.var import VAR
from var_model.vqvae import VQVAE

try:
    from torch_fidelity import feature_extractor_inceptionv3 as fidelity_inception
except (ImportError, RuntimeError) as error:  # RuntimeError: a torchvision built for another torch
    pytest.skip(f"torch-fidelity is not usable here ({error})", allow_module_level=True)

pytestmark = pytest.mark.slow  # Inception-v3 at 299x299 on a CPU: about a minute


class RandomInception(nn.Module):
    """torch-fidelity's inception-v3-compat layers, named as its state dict names them."""

    def __init__(self):
        super().__init__()
        blocks = fidelity_inception
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


def test_fid_path_runs_end_to_end_without_a_download(weights_path, tmp_path):
    torch.manual_seed(0)
    # few images: each is a 299x299 Inception forward on a CPU
    data = DataConfig(kind="synthetic", resolution=32, num_classes=2, train_images=8, test_images=8)
    config = EvaluationConfig(samples_per_class=2, feature="inception", inception_weights=str(weights_path))
    vqvae = VQVAE(VQVAEConfig.debug())
    report = prepare_study_evaluation(config, ImageSource(data), vqvae, tmp_path, torch.device("cpu"))
    assert {"floor_real_sample_fid", "floor_reconstruction_sample_fid", "floor_real_sample_inception_score"} <= set(
        report
    )
    evaluator = SampleEvaluator.for_study(config, tmp_path, ImageSource(data).identity(), 2, torch.device("cpu"))
    var = VAR(VARConfig.for_vqvae(vqvae.config, num_classes=2, depth=1, width=32, num_heads=2), vqvae=vqvae)
    metrics = evaluator.evaluate(var)
    assert math.isfinite(metrics["sample_fid"]) and metrics["sample_fid"] >= 0
    assert metrics["sample_inception_score"] >= 1.0 - 1e-6
    assert evaluator.protocol()["sample_protocol_implementation"].startswith("torch-fidelity")
