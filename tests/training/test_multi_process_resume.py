"""Two processes (gloo on CPU) resumed from a checkpoint continue bit for bit as the
uninterrupted run: each rank gets its own RNG streams and metric window back, not rank 0's.
`slow`: each run starts two processes."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
from torch import multiprocessing

from var_model.training import TrialCallback, TrialConfig, TrialResult, run_trial
from var_model.training.checkpoint import CHECKPOINT_FILE, load_checkpoint

# class dropout and drop-path draw per rank, so a resume that gave rank 1 another stream
# (or rank 0's) would train other steps
RANDOM_DRAWS = {"depth": 2, "width": 32, "num_heads": 2, "class_dropout": 0.5, "drop_path_rate": 0.2}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class CopyCheckpointAt(TrialCallback):
    """Copies the checkpoint of one step to another directory: that directory is then what a
    run killed right after that checkpoint leaves (a callback on rank 0 cannot stop all ranks)."""

    def __init__(self, step: int, directory: str) -> None:
        self.step, self.directory = step, directory

    def on_checkpoint(self, step, path):
        if step == self.step:
            Path(self.directory).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(self.directory) / CHECKPOINT_FILE)


def _rank(rank: int, port: int, config: TrialConfig, resume: bool, callback: TrialCallback | None) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    run_trial(config, callback=callback, resume=resume)


def _two_ranks(config: TrialConfig, resume: bool, callback: TrialCallback | None = None) -> TrialResult:
    multiprocessing.spawn(_rank, args=(_free_port(), config, resume, callback), nprocs=2, join=True)
    return TrialResult.load(config.output_dir)


@pytest.mark.slow
def test_two_ranks_resumed_mid_window_equal_the_uninterrupted_run_bit_for_bit(tiny_trial, tmp_path):
    # checkpoint at step 6, log points every 4: the window open at the checkpoint (steps 5-6)
    # differs per rank and must come back per rank
    config = tiny_trial.replace(model=RANDOM_DRAWS)
    straight_dir, resumed_dir = str(tmp_path / "straight"), str(tmp_path / "resumed")
    copy_step_six = CopyCheckpointAt(6, resumed_dir)
    straight = _two_ranks(config.replace(output_dir=straight_dir), resume=False, callback=copy_step_six)
    saved = load_checkpoint(Path(resumed_dir) / CHECKPOINT_FILE)
    assert saved["step"] == 6 and len(saved["ranks"]) == 2
    assert not torch.equal(saved["ranks"][0]["rng"]["torch"], saved["ranks"][1]["rng"]["torch"])

    resumed = _two_ranks(config.replace(output_dir=resumed_dir), resume=True)
    assert resumed.status == "completed"
    assert resumed.metrics == straight.metrics  # exact, not approximate
    final = load_checkpoint(Path(resumed_dir) / CHECKPOINT_FILE)["model"]
    for name, tensor in load_checkpoint(Path(straight_dir) / CHECKPOINT_FILE)["model"].items():
        assert torch.equal(final[name], tensor), name
