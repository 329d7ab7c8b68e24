"""A checkpoint damaged on disk (a probe truncated one to half its bytes, which failed its trial
on every relaunch) costs only the steps since the previous checkpoint: the trial resumes from
`checkpoint.previous.pt`, or restarts from step 0, and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from var_model.errors import CheckpointWarning
from var_model.training import TrialCallback, run_trial
from var_model.training.checkpoint import (
    CHECKPOINT_FILE,
    PREVIOUS_CHECKPOINT_FILE,
    UNREADABLE_SUFFIX,
    load_checkpoint,
)


class StartRecorder(TrialCallback):
    def __init__(self) -> None:
        self.started: list[dict] = []

    def on_start(self, info):
        self.started.append(info)


def _truncate_to_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_save_keeps_the_checkpoint_it_replaces(tiny_trial, stop_after_checkpoint):
    with pytest.raises(KeyboardInterrupt):
        run_trial(tiny_trial, callback=stop_after_checkpoint(12), resume=False)
    directory = Path(tiny_trial.output_dir)
    assert load_checkpoint(directory / CHECKPOINT_FILE)["step"] == 12
    assert load_checkpoint(directory / PREVIOUS_CHECKPOINT_FILE)["step"] == 6


def test_a_truncated_checkpoint_resumes_from_the_previous_one_and_says_so(tiny_trial, tmp_path, stop_after_checkpoint):
    straight = run_trial(tiny_trial.replace(output_dir=str(tmp_path / "straight")), resume=False)
    with pytest.raises(KeyboardInterrupt):
        # killed after the final checkpoint, before result.json: a relaunch must read step 12's file
        run_trial(tiny_trial, callback=stop_after_checkpoint(12), resume=False)
    directory = Path(tiny_trial.output_dir)
    _truncate_to_half(directory / CHECKPOINT_FILE)

    recorder = StartRecorder()
    with pytest.warns(CheckpointWarning, match="cannot be read.*resumed from checkpoint.previous.pt at step 6"):
        resumed = run_trial(tiny_trial, callback=recorder)
    assert resumed.status == "completed"
    assert resumed.metrics == straight.metrics  # steps 7-12 trained again, exactly as before
    assert recorder.started[0]["resumed_step"] == 6
    assert "cannot be read" in recorder.started[0]["checkpoint_fallback"]
    assert (directory / (CHECKPOINT_FILE + UNREADABLE_SUFFIX)).exists()  # kept for a look, out of the way
    start = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    assert any("checkpoint_fallback" in record for record in start if record["event"] == "start")
    # the next relaunch finds the finished trial, not the damaged file
    assert run_trial(tiny_trial) == resumed


def test_with_no_readable_checkpoint_the_trial_restarts_from_step_zero_and_says_so(
    tiny_trial, tmp_path, stop_after_checkpoint
):
    straight = run_trial(tiny_trial.replace(output_dir=str(tmp_path / "straight")), resume=False)
    with pytest.raises(KeyboardInterrupt):
        run_trial(tiny_trial, callback=stop_after_checkpoint(6), resume=False)  # one checkpoint, no previous
    _truncate_to_half(Path(tiny_trial.output_dir) / CHECKPOINT_FILE)

    recorder = StartRecorder()
    with pytest.warns(CheckpointWarning, match="restarted from step 0"):
        restarted = run_trial(tiny_trial, callback=recorder)
    assert restarted.status == "completed" and recorder.started[0]["resumed_step"] == 0
    assert restarted.metrics == straight.metrics
