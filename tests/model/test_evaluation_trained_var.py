"""(slow, 1.5-2.5 minutes) A trained VAR's samples score better than an untrained one's on the
embedded data, under one protocol.

The test owns its whole setup, so it does not depend on the demo's tokenizer or network
settings: 16x16 synthetic images of 4 classes; a tokenizer trained for 300 steps, whose
reconstructions keep the class for the feature network (reconstruction floor accuracy
0.46-0.53 over data seeds 0-2, chance 0.25); the built-in feature network trained on the real
training images (the study stage's own); then one VAR configuration trained by run_trial for 1
step (untrained) and for 600 steps, each scored by the trial's own evaluation step (64 samples
per class, cfg 1.5, sampling seed 0).

Measured over seeds 0, 1, 2 (data, tokenizer and VAR seeds together) at this protocol:
sample_accuracy 0.19 -> 0.38, 0.22 -> 0.37, 0.29 -> 0.37 (smallest gain 0.09) and sample_fd
7.0 -> 6.6, 9.0 -> 7.8, 8.0 -> 5.3 (smallest drop 7%). So the accuracy gets a margin and the fd
only its direction. At 16 samples per class the fd rose for seed 2 (7.5 -> 7.8), which is why the
protocol has 64; at 1500 steps the accuracy gains were no larger, so 600 steps suffice.
"""

from __future__ import annotations

import pytest
import torch

from var_model.config import VQVAEConfig
from var_model.data import DataConfig
from var_model.data.source import ImageSource
from var_model.evaluation import EvaluationConfig, FeatureNetworkConfig, prepare_study_evaluation
from var_model.tokenizer import TokenizerStageConfig, TokenizerTrainingConfig, load_tokenizer, run_tokenizer_stage
from var_model.training import TrialConfig, run_trial

pytestmark = pytest.mark.slow

SEED = 0
DATA = DataConfig(kind="synthetic", resolution=16, num_classes=4, train_images=1024, test_images=256, seed=SEED)
# 16x16 images, a 4x4 latent: each token covers 4x4 pixels, so 300 steps keep the shapes
TOKENIZER = VQVAEConfig(
    image_size=16,
    channels=32,
    channel_multipliers=(1, 2, 2),
    num_res_blocks=1,
    codebook_size=64,
    latent_channels=8,
    patch_nums=(1, 2, 4),
)
# every field spelled out, so a change of the defaults does not change this test
NETWORK = FeatureNetworkConfig(width=16, feature_dim=32, steps=200, batch_size=64, lr=3e-3, seed=0, augment=0.5)
PROTOCOL = {
    "samples_per_class": 64,
    "cfg": 1.5,
    "top_k": 0,
    "top_p": 0.96,
    "seed": 0,
    "batch_size": 100,
    "neighbours": 3,
    "network": NETWORK.to_dict(),
}
TRAINED_STEPS = 600
BATCH = 32
# the smallest accuracy gain measured over seeds 0-2 was 0.09 at this protocol
ACCURACY_MARGIN = 0.05


@pytest.fixture(scope="module")
def token_cache(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cache")
    source = ImageSource(DATA)
    # every field spelled out, as for the network
    training = TokenizerTrainingConfig(
        steps=300,
        batch_size=32,
        lr=3e-4,
        grad_clip=1.0,
        seed=SEED,
        quantizer_weight=1.0,
        codebook_init_from_data=True,
        dead_code_every=25,
        dead_code_threshold=0.01,
        log_every=100,
        eval_images=128,
    )
    stage = run_tokenizer_stage(
        TokenizerStageConfig(
            data=DATA, vqvae=TOKENIZER, cache_root=str(root), training=training, encode_batch_size=256, device="cpu"
        ),
        source=source,
    )
    # the study stage's share: the feature network on the real images, and the floors
    floors = prepare_study_evaluation(
        EvaluationConfig.from_dict(PROTOCOL), source, load_tokenizer(stage.tokenizer_path), root, torch.device("cpu")
    )
    return stage.cache_path, floors


def _final_sample_metrics(cache_path: str, output_dir, steps: int) -> dict[str, float]:
    trial = TrialConfig(
        token_cache=cache_path,
        output_dir=str(output_dir),
        model={"depth": 2, "width": 64, "num_heads": 2},
        budget_value=BATCH * steps,
        batch_size=BATCH,
        base_lr=0.064,
        device="cpu",
        seed=SEED,
        evaluation=PROTOCOL,
    )
    return run_trial(trial).metrics


def test_a_trained_var_scores_better_than_an_untrained_one(token_cache, tmp_path):
    cache_path, floors = token_cache
    # the setup can show a difference: the tokenizer keeps the classes above chance
    assert floors["floor_reconstruction_sample_accuracy"] > 0.25 + ACCURACY_MARGIN
    untrained = _final_sample_metrics(cache_path, tmp_path / "untrained", steps=1)
    trained = _final_sample_metrics(cache_path, tmp_path / "trained", steps=TRAINED_STEPS)
    assert trained["final_sample_accuracy"] >= untrained["final_sample_accuracy"] + ACCURACY_MARGIN, (
        untrained,
        trained,
    )
    assert trained["final_sample_fd"] < untrained["final_sample_fd"], (untrained, trained)
