"""Micro-batches: k forward/backward passes per update give the update of one full batch.

Shared-weight comparisons read the final checkpoint (every trial writes one at its last step).
Class dropout and drop-path are off where weights are compared: their random draws depend on
the batch's shape, so a split batch would draw different masks (not a different update rule).
"""

import math
import os
import socket
from pathlib import Path

import pytest
import torch
from torch import multiprocessing

from var_model.errors import ConfigError
from var_model.training import TrialCallback, TrialConfig, run_trial
from var_model.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
from var_model.training.setup import MicroBatches

NO_RANDOM_DRAWS = {"depth": 1, "width": 32, "num_heads": 2, "class_dropout": 0.0, "drop_path_rate": 0.0}


def final_weights(config: TrialConfig) -> dict[str, torch.Tensor]:
    return load_checkpoint(Path(config.output_dir) / CHECKPOINT_FILE)["model"]


def max_difference(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> float:
    assert first.keys() == second.keys()
    return max(float((first[key].double() - second[key].double()).abs().max()) for key in first)


@pytest.fixture
def three_steps(tiny_trial) -> TrialConfig:
    return tiny_trial.replace(
        model=NO_RANDOM_DRAWS, budget_value=16 * 3, eval_every=0, checkpoint_every=0, log_every=1, eval_images=8
    )


def test_micro_batches_give_the_full_batch_update(three_steps, tmp_path):
    full = three_steps.replace(output_dir=str(tmp_path / "full"))
    split = three_steps.replace(output_dir=str(tmp_path / "split"), micro_batch_size=4)
    full_result, split_result = run_trial(full, resume=False), run_trial(split, resume=False)
    assert split_result.info["accumulation_steps"] == 4 and full_result.info["accumulation_steps"] == 1
    # the weights moved (the comparison is not of two initial states) and agree after 3 updates
    assert max_difference(final_weights(full), final_weights(split)) < 1e-6
    assert split_result.metrics["final_train_loss"] == pytest.approx(full_result.metrics["final_train_loss"], rel=1e-6)
    assert split_result.metrics["final_images"] == full_result.metrics["final_images"] == 16 * 3


def test_resume_with_micro_batches_is_bit_identical(tiny_trial, tmp_path):
    config = tiny_trial.replace(
        micro_batch_size=4, model={"depth": 1, "width": 32, "num_heads": 2, "class_dropout": 0.5, "drop_path_rate": 0.2}
    )
    straight = run_trial(config.replace(output_dir=str(tmp_path / "straight")), resume=False)
    interrupted = config.replace(output_dir=str(tmp_path / "interrupted"))
    with pytest.raises(Interrupt):
        run_trial(interrupted, callback=InterruptAt6(), resume=False)
    recorder = InterruptAt6()
    resumed = run_trial(interrupted, callback=recorder)
    assert recorder.started[0]["resumed_step"] == 6
    assert resumed.metrics == straight.metrics  # exact, not approximate


def test_a_trial_resumes_with_another_micro_batch(tiny_trial):
    with pytest.raises(Interrupt):
        run_trial(tiny_trial.replace(micro_batch_size=8), callback=InterruptAt6(), resume=False)
    recorder = InterruptAt6()
    resumed = run_trial(tiny_trial.replace(micro_batch_size=2), callback=recorder)
    assert resumed.status == "completed" and recorder.started[0]["resumed_step"] == 6
    assert recorder.started[0]["accumulation_steps"] == 8


def test_a_micro_batch_that_does_not_divide_the_batch_names_the_fields():
    with pytest.raises(ConfigError, match="micro_batch_size 5 does not divide batch_size 16"):
        TrialConfig(token_cache="c", output_dir="o", batch_size=16, micro_batch_size=5)
    with pytest.raises(ConfigError, match="micro_batch_size"):
        TrialConfig(token_cache="c", output_dir="o", micro_batch_size=0)
    # 16 over 2 ranks is 8 each: a micro-batch of 16 divides the batch, not the share
    with pytest.raises(ConfigError, match=r"micro_batch_size 16 .* batch_size 16 over world size 2"):
        MicroBatches.plan(16, 16, world_size=2)
    with pytest.raises(ConfigError, match=r"micro_batch_size 4 .* batch_size 24 over world size 4 \(6 images\)"):
        MicroBatches.plan(24, 4, world_size=4)
    assert MicroBatches.plan(24, 3, world_size=4).steps == 2
    assert MicroBatches.plan(24, None, world_size=4) == MicroBatches(per_rank=6, size=6)


class Interrupt(Exception):
    pass


class InterruptAt6(TrialCallback):
    """Stops a trial after its step-6 checkpoint; records the start info of a run."""

    def __init__(self):
        self.started = []

    def on_start(self, info):
        self.started.append(info)

    def on_checkpoint(self, step, path):
        if step == 6:
            raise Interrupt


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rank(rank: int, world_size: int, port: int, config: TrialConfig) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    run_trial(config, resume=False)


@pytest.mark.slow
def test_two_ranks_with_micro_batches_give_the_full_batch_update(three_steps, tmp_path):
    single = three_steps.replace(output_dir=str(tmp_path / "single"))
    ranks = three_steps.replace(output_dir=str(tmp_path / "ranks"), micro_batch_size=2)  # 8 per rank, 4 passes
    run_trial(single, resume=False)
    multiprocessing.spawn(_rank, args=(2, _free_port(), ranks), nprocs=2, join=True)
    assert max_difference(final_weights(single), final_weights(ranks)) < 1e-6
    assert math.isfinite(load_checkpoint(Path(ranks.output_dir) / CHECKPOINT_FILE)["window"]["loss"])
