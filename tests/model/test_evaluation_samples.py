"""The built-in sample metrics on the embedded data: real images score near the floor and noise
far above it; the trainer logs final_sample_* with the protocol; a feature network from other
data is refused; and (slow) a trained VAR scores better than an untrained one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from var_model.config import VQVAEConfig
from var_model.data import DataConfig
from var_model.data.source import ImageSource
from var_model.errors import ConfigError
from var_model.evaluation import EvaluationConfig, FeatureNetworkConfig, SampleEvaluator, prepare_study_evaluation
from var_model.evaluation.features import build_feature_network, load_feature_network, split_tensors
from var_model.evaluation.metrics import feature_metrics
from var_model.tokenizer import TokenizerStageConfig, TokenizerTrainingConfig, run_tokenizer_stage
from var_model.training import TrialCallback, TrialConfig, run_trial
from var_model.vqvae import VQVAE

DATA = DataConfig(kind="synthetic", resolution=32, num_classes=4, train_images=256, test_images=128, seed=5)
# 150 steps: at 30 the features barely told an untrained tokenizer's reconstructions from real
# images (reconstruction fd 0.60-1.34 against real 0.72 over 8 seeds); at 150, 12.3-22.8 against 7.6
QUICK_NETWORK = FeatureNetworkConfig(width=8, feature_dim=16, steps=150, batch_size=32)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def feature_directory(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("features")
    directory, reused = build_feature_network(ImageSource(DATA), QUICK_NETWORK, root, CPU)
    assert not reused and build_feature_network(ImageSource(DATA), QUICK_NETWORK, root, CPU) == (directory, True)
    return directory


def test_real_images_score_near_the_floor_and_noise_far_above(feature_directory):
    network, _ = load_feature_network(feature_directory, ImageSource(DATA).identity(), CPU)
    images, labels = split_tensors(ImageSource(DATA), "test", CPU)
    features, _ = network.embed(images)
    first, second = features[:64].numpy(), features[64:].numpy()
    halves = feature_metrics(second, first, neighbours=3)
    noise_features, _ = network.embed(torch.rand(64, 3, 32, 32) * 2 - 1)
    noise = feature_metrics(noise_features.numpy(), first, neighbours=3)
    assert halves["fd"] < 0.2 * noise["fd"]
    assert halves["precision"] > 0.5


def test_floors_are_measured_under_the_trials_protocol(feature_directory):
    config = EvaluationConfig(samples_per_class=8, network=QUICK_NETWORK)
    torch.manual_seed(0)  # the untrained tokenizer's weights, whatever ran before
    vqvae = VQVAE(VQVAEConfig.debug())  # untrained: its reconstructions are poor, so its floor is higher
    report = prepare_study_evaluation(config, ImageSource(DATA), vqvae, feature_directory.parent, CPU)
    assert 0.0 <= report["feature_test_accuracy"] <= 1.0
    assert report["floor_real_sample_fd"] < report["floor_reconstruction_sample_fd"]
    assert {f"floor_real_sample_{name}" for name in ("accuracy", "fd", "precision", "recall")} <= set(report)


def test_a_feature_network_of_other_data_is_refused(feature_directory):
    other = DataConfig(kind="synthetic", resolution=32, num_classes=4, train_images=256, test_images=128, seed=6)
    with pytest.raises(ConfigError, match=r"another data set \(differing: \['seed'\]\)"):
        load_feature_network(feature_directory, ImageSource(other).identity(), CPU)


class Recorder(TrialCallback):
    def on_start(self, info):
        self.info = info


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    config = TokenizerStageConfig(
        data=DATA,
        vqvae=VQVAEConfig.debug(),
        cache_root=str(tmp_path_factory.mktemp("cache")),
        training=TokenizerTrainingConfig(steps=6, batch_size=8, log_every=3, dead_code_every=3, eval_images=32),
        encode_batch_size=64,
        device="cpu",
    )
    result = run_tokenizer_stage(config)
    build_feature_network(ImageSource(DATA), QUICK_NETWORK, config.cache_root, CPU)
    return result


def _trial(stage, tmp_path, steps: int, **evaluation) -> TrialConfig:
    protocol = {"samples_per_class": 4, "network": QUICK_NETWORK.to_dict(), **evaluation}
    return TrialConfig(
        token_cache=stage.cache_path,
        output_dir=str(tmp_path),
        model={"depth": 1, "width": 32, "num_heads": 2},
        budget_value=16 * steps,
        batch_size=16,
        base_lr=5e-2,
        log_every=4,
        device="cpu",
        evaluation=protocol,
    )


def test_a_trial_logs_final_sample_metrics_with_its_protocol(stage, tmp_path):
    recorder = Recorder()
    result = run_trial(_trial(stage, tmp_path, steps=4, cfg=2.0), recorder)
    for name in ("accuracy", "fd", "precision", "recall", "evaluation_seconds"):
        assert np.isfinite(result.metrics[f"final_sample_{name}"])
    protocol = {key: value for key, value in recorder.info.items() if key.startswith("sample_protocol_")}
    assert protocol["sample_protocol_cfg"] == 2.0 and protocol["sample_protocol_samples"] == 16
    assert protocol["sample_protocol_feature_sha256"] and protocol["sample_protocol_reference_sha256"]


def test_a_missing_feature_network_fails_before_training(stage, tmp_path):
    config = _trial(stage, tmp_path, steps=4, network={**QUICK_NETWORK.to_dict(), "steps": 31})
    with pytest.raises(ConfigError, match="no feature network"):
        run_trial(config)
    assert not (tmp_path / "checkpoint.pt").exists()


@pytest.mark.slow
def test_a_trained_var_scores_better_than_an_untrained_one(tmp_path):
    torch.set_num_threads(1)
    data = DataConfig(kind="synthetic", resolution=32, num_classes=4, train_images=2000, test_images=400, seed=1)
    network = FeatureNetworkConfig(width=16, steps=300)
    config = TokenizerStageConfig(
        data=data,
        vqvae=VQVAEConfig.debug(),
        cache_root=str(tmp_path / "cache"),
        training=TokenizerTrainingConfig(steps=100, batch_size=32, log_every=50, dead_code_every=25, eval_images=200),
        encode_batch_size=250,
        device="cpu",
    )
    result = run_tokenizer_stage(config)
    build_feature_network(ImageSource(data), network, config.cache_root, CPU)

    def scores(steps: int) -> dict:
        trial = TrialConfig(
            token_cache=result.cache_path,
            output_dir=str(tmp_path / f"trial{steps}"),
            model={"depth": 2, "width": 64, "num_heads": 2},
            budget_value=16 * steps,
            batch_size=16,
            base_lr=0.064,
            device="cpu",
            evaluation={"samples_per_class": 20, "network": network.to_dict()},
        )
        return run_trial(trial).metrics

    untrained, trained = scores(1), scores(600)
    assert trained["final_sample_accuracy"] > untrained["final_sample_accuracy"]
    assert trained["final_sample_fd"] < untrained["final_sample_fd"]


def test_evaluator_protocol_names_the_feature_and_the_sampling(feature_directory):
    config = EvaluationConfig(samples_per_class=3, top_k=7, network=QUICK_NETWORK)
    evaluator = SampleEvaluator.for_study(config, feature_directory.parent, ImageSource(DATA).identity(), 4, CPU)
    protocol = evaluator.protocol()
    assert protocol["sample_protocol_samples"] == 12 and protocol["sample_protocol_top_k"] == 7
    assert protocol["sample_protocol_feature"] == f"builtin {feature_directory.name}"
