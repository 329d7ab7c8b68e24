"""Shared tiny data for the training tests: one debug tokenizer and token cache per session."""

from __future__ import annotations

import pytest
import torch

from var_model.data import DataConfig
from var_model.tokenizer import TokenizerStageConfig, TokenizerTrainingConfig, run_tokenizer_stage
from var_model.training import TrialCallback, TrialConfig

TINY_DATA = DataConfig(kind="synthetic", resolution=32, num_classes=4, train_images=192, test_images=48, seed=3)


@pytest.fixture(scope="session")
def tiny_stage(tmp_path_factory):
    """A debug VQVAE trained for a few steps and its token cache (built once, ~3 s)."""
    torch.set_num_threads(1)
    from var_model.config import VQVAEConfig

    config = TokenizerStageConfig(
        data=TINY_DATA,
        vqvae=VQVAEConfig.debug(),
        cache_root=str(tmp_path_factory.mktemp("cache")),
        training=TokenizerTrainingConfig(steps=6, batch_size=8, log_every=3, dead_code_every=3, eval_images=48),
        encode_batch_size=64,
        device="cpu",
    )
    return config, run_tokenizer_stage(config)


@pytest.fixture
def tiny_trial(tiny_stage, tmp_path) -> TrialConfig:
    """12 steps of a depth-1 VAR at batch 16: under a second on one thread."""
    _, result = tiny_stage
    return TrialConfig(
        token_cache=result.cache_path,
        output_dir=str(tmp_path / "trial"),
        model={"depth": 1, "width": 32, "num_heads": 2},
        budget_kind="images",
        budget_value=16 * 12,
        batch_size=16,
        base_lr=5e-2,
        log_every=4,
        eval_every=6,
        checkpoint_every=6,
        device="cpu",
    )


class StopAfterCheckpoint(TrialCallback):
    """Stops a trial right after its checkpoint at `step`, as a killed worker would: the
    KeyboardInterrupt escapes run_trial and leaves that checkpoint behind."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_checkpoint(self, step, path):
        if step == self.step:
            raise KeyboardInterrupt


@pytest.fixture
def stop_after_checkpoint():
    """A factory: `stop_after_checkpoint(6)` is a callback that stops its trial after step 6's checkpoint."""
    return StopAfterCheckpoint
