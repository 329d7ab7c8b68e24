"""Checkpoints are read as data only: a crafted pickle never runs, in `varscale sample` or on
resume, and checkpoints of the previous format still resume."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from var_model.errors import CheckpointError
from var_model.training import run_trial
from var_model.training.checkpoint import CHECKPOINT_FILE, capture_rng_state, load_checkpoint, restore_rng_state


class _RunsACommand:
    """What an attacker pickles: unpickling it calls os.system."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _write_payload_checkpoint(path: Path, marker: Path) -> None:
    # every key a real checkpoint has, so that only the payload can make the load fail
    state = {
        "format": 2,
        "step": 1,
        "model": {},
        "optimizer": {},
        "schedule": {},
        "data_position": {},
        "trial_config": {},
        "rng": _RunsACommand(f"touch {marker}"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def test_sample_refuses_a_payload_checkpoint_without_running_it(tmp_path):
    checkpoint, marker = tmp_path / "evil" / CHECKPOINT_FILE, tmp_path / "pwned"
    _write_payload_checkpoint(checkpoint, marker)
    varscale = Path(sys.executable).with_name("varscale")
    completed = subprocess.run(
        [str(varscale), "sample", str(checkpoint), "--labels", "0", "--out", str(tmp_path / "x.png")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2, completed.stderr
    assert "never unpickles" in completed.stderr and "system" in completed.stderr  # names the refused global
    assert "Traceback" not in completed.stderr
    assert not marker.exists()
    assert not (tmp_path / "x.png").exists()


def test_resume_refuses_a_payload_checkpoint_without_running_it(tiny_trial, tmp_path):
    marker = tmp_path / "pwned"
    _write_payload_checkpoint(Path(tiny_trial.output_dir) / CHECKPOINT_FILE, marker)
    with pytest.raises(CheckpointError, match="data-only load refuses"):
        run_trial(tiny_trial, resume=True)
    assert not marker.exists()


def test_rng_state_round_trips_through_a_data_only_load(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in numpy's legacy state
    state = capture_rng_state(torch.device("cpu"))
    path = tmp_path / "rng.pt"
    torch.save(state, path)
    loaded = torch.load(path, weights_only=True)  # no allowlist needed: all tensors and numbers
    expected = (torch.rand(3), np.random.standard_normal(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    restore_rng_state(loaded, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.standard_normal(3), expected[1])
    assert random.random() == expected[2]


def _as_format_one(path: Path) -> None:
    """Rewrite a checkpoint as the previous code wrote it: numpy's and Python's RNG states
    as the tuples that np.random.get_state() and random.getstate() return."""
    state = load_checkpoint(path)
    numpy_state, python_state = state["rng"]["numpy"], state["rng"]["python"]
    state["format"] = 1
    del state["ranks"]  # every rank's streams came with format 2
    state["rng"]["numpy"] = (
        numpy_state["bit_generator"],
        numpy_state["key"].numpy().astype(np.uint32),
        numpy_state["position"],
        numpy_state["has_gauss"],
        numpy_state["cached_gaussian"],
    )
    state["rng"]["python"] = (python_state["version"], tuple(python_state["state"]), python_state["gauss"])
    torch.save(state, path)


def test_a_format_one_checkpoint_resumes_bit_exactly(tiny_trial, tmp_path, stop_after_checkpoint):
    config = tiny_trial.replace(
        model={"depth": 1, "width": 32, "num_heads": 2, "class_dropout": 0.5, "drop_path_rate": 0.2}
    )
    reference = run_trial(config.replace(output_dir=str(tmp_path / "reference")), resume=False)
    interrupted = config.replace(output_dir=str(tmp_path / "interrupted"))
    with pytest.raises(KeyboardInterrupt):
        run_trial(interrupted, callback=stop_after_checkpoint(6), resume=False)
    checkpoint = Path(interrupted.output_dir) / CHECKPOINT_FILE
    _as_format_one(checkpoint)
    assert load_checkpoint(checkpoint)["format"] == 1
    resumed = run_trial(interrupted, resume=True)
    assert resumed.metrics == reference.metrics  # exact, not approximate
