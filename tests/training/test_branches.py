"""Cooldown branches: a trunk's forks, and branches that equal independent wsd runs bit for bit."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from var_model.errors import CheckpointError, ConfigError, TrialError
from var_model.files import file_sha256
from var_model.training import TrialCallback, read_metrics, run_trial
from var_model.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
from var_model.training.forks import (
    branch_config,
    fork_file,
    read_forks,
    trunk_config,
    write_fork,
)

# batch 16: budgets of 10 and 15 steps fork at steps 8 and 12 (decay_fraction 0.2); with
# log_every 3, step 8 is inside a metric window and step 12 closes one
SHORT, LONG = 16 * 10, 16 * 15
FORK_OF = {SHORT: 8, LONG: 12}


class Interrupt(Exception):
    pass


class Recorder(TrialCallback):
    def __init__(self, interrupt_fork=None, interrupt_checkpoint=None):
        self.started, self.forks = [], []
        self.interrupt_fork, self.interrupt_checkpoint = interrupt_fork, interrupt_checkpoint

    def on_start(self, info):
        self.started.append(info)

    def on_fork(self, fork):
        self.forks.append(fork)
        if fork.step == self.interrupt_fork:
            raise Interrupt(fork.step)

    def on_checkpoint(self, step, path):
        if step == self.interrupt_checkpoint:
            raise Interrupt(step)


@pytest.fixture
def base(tiny_trial):
    """The recipe every trunk, branch and independent run here shares: wsd, fixed warm-up,
    class dropout and drop-path on (so the RNG streams matter)."""
    return tiny_trial.replace(
        model={"depth": 1, "width": 32, "num_heads": 2, "class_dropout": 0.5, "drop_path_rate": 0.2},
        schedule="wsd",
        warmup_steps=2,
        decay_fraction=0.2,
        log_every=3,
        eval_every=6,
        eval_images=16,
    )


def _strip(records):
    return [{key: value for key, value in record.items() if key != "elapsed_seconds"} for record in records]


def _final_weights(output_dir):
    return load_checkpoint(Path(output_dir) / CHECKPOINT_FILE)["model"]


def _assert_same_weights(first, second):
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


@pytest.mark.parametrize("micro_batch_size", [None, 8])
def test_branches_equal_independent_wsd_runs_bit_for_bit(base, tmp_path, micro_batch_size):
    base = base.replace(micro_batch_size=micro_batch_size)
    recorder = Recorder()
    trunk = trunk_config(base, [SHORT, LONG], str(tmp_path / "trunk"))
    trunk_result = run_trial(trunk, callback=recorder, resume=False)
    assert trunk_result.steps == 12 and trunk_result.info["role"] == "trunk"
    assert [(fork.step, fork.budget_value) for fork in recorder.forks] == [(8, SHORT), (12, LONG)]
    assert [fork.to_dict() for fork in recorder.forks] == trunk_result.info["forks"]
    assert read_forks(trunk.output_dir) == recorder.forks
    for fork in recorder.forks:
        assert file_sha256(fork.path) == fork.sha256
        assert not os.access(fork.path, os.W_OK) or os.geteuid() == 0  # written read-only
    trunk_records = _strip(read_metrics(tmp_path / "trunk" / "metrics.jsonl"))

    for fork in recorder.forks:
        budget = fork.budget_value
        independent = base.replace(
            output_dir=str(tmp_path / f"independent_{budget:g}"), budget_value=budget, decay_shape="sqrt"
        )
        expected = run_trial(independent, resume=False)
        branch = branch_config(trunk, fork, str(tmp_path / f"branch_{budget:g}"), decay_shape="sqrt")
        result = run_trial(branch, resume=False)
        assert result.metrics == expected.metrics  # exact: ==, not approx
        assert result.steps == expected.steps == budget // 16
        assert result.info["steps_trained"] == budget // 16 - fork.step and result.info["fork_step"] == fork.step
        _assert_same_weights(_final_weights(branch.output_dir), _final_weights(independent.output_dir))
        independent_records = _strip(read_metrics(Path(independent.output_dir) / "metrics.jsonl"))
        branch_records = _strip(read_metrics(Path(branch.output_dir) / "metrics.jsonl"))
        assert branch_records == [record for record in independent_records if record["step"] > fork.step]
        # the trunk trained exactly the independent run's first steps (same lr, losses, counters)
        assert [record for record in trunk_records if record["step"] < fork.step] == [
            record for record in independent_records if record["step"] < fork.step
        ]
    long_records = _strip(read_metrics(tmp_path / f"independent_{LONG:g}" / "metrics.jsonl"))
    assert trunk_records == [record for record in long_records if record["step"] <= FORK_OF[LONG]]


def test_a_killed_trunk_resumes_and_keeps_the_forks_it_wrote(base, tmp_path):
    straight = run_trial(trunk_config(base, [SHORT, LONG], str(tmp_path / "straight")), resume=False)
    trunk = trunk_config(base, [SHORT, LONG], str(tmp_path / "killed"))
    with pytest.raises(Interrupt):  # after the fork of step 8, with the last checkpoint at step 6
        run_trial(trunk, callback=Recorder(interrupt_fork=8), resume=False)
    first = fork_file(trunk.output_dir, 8)
    written_hash, written_stat = file_sha256(first), first.stat()
    recorder = Recorder()
    resumed = run_trial(trunk, callback=recorder)
    assert recorder.started[0]["resumed_step"] == 6
    # the fork already written is reported again first, and left as it was
    assert [fork.step for fork in recorder.forks] == [8, 12]
    assert recorder.forks[0].sha256 == written_hash == file_sha256(first)
    assert first.stat().st_mtime_ns == written_stat.st_mtime_ns and first.stat().st_ino == written_stat.st_ino
    assert resumed.metrics == straight.metrics
    events = [json.loads(line) for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [event["step"] for event in events if event["event"] == "fork"] == [8, 12]  # each once
    for step in (8, 12):
        _assert_same_weights(
            load_checkpoint(fork_file(trunk.output_dir, step))["model"],
            load_checkpoint(fork_file(straight.info["trial_config"]["output_dir"], step))["model"],
        )
    # a relaunch of the finished trunk trains nothing and still lists its forks
    again = Recorder()
    assert run_trial(trunk, callback=again) == resumed and again.started == []
    assert [fork["step"] for fork in resumed.info["forks"]] == [8, 12]


def test_a_killed_branch_resumes_from_its_own_checkpoint(base, tmp_path):
    recorder = Recorder()
    trunk = trunk_config(base, [SHORT, LONG], str(tmp_path / "trunk"))
    run_trial(trunk, callback=recorder, resume=False)
    fork = recorder.forks[1]  # step 12 of 15
    expected = run_trial(base.replace(output_dir=str(tmp_path / "independent"), budget_value=LONG), resume=False)
    branch = branch_config(trunk, fork, str(tmp_path / "branch"), checkpoint_every=1)
    with pytest.raises(Interrupt):
        run_trial(branch, callback=Recorder(interrupt_checkpoint=13), resume=False)
    # the fork is gone: only the branch's own checkpoint can carry it on
    shutil.move(fork.path, tmp_path / "moved.pt")
    resumed_recorder = Recorder()
    resumed = run_trial(branch, callback=resumed_recorder)
    assert resumed_recorder.started[0]["resumed_step"] == 13
    assert resumed.metrics == expected.metrics
    _assert_same_weights(_final_weights(branch.output_dir), _final_weights(tmp_path / "independent"))
    # a fresh start, though, needs the fork
    with pytest.raises(CheckpointError, match="does not exist"):
        run_trial(branch, resume=False)


def test_a_tampered_fork_is_refused_with_both_hashes(base, tmp_path):
    trunk = trunk_config(base, [SHORT, LONG], str(tmp_path / "trunk"))
    with pytest.raises(Interrupt):
        run_trial(trunk, callback=Recorder(interrupt_fork=8), resume=False)
    fork = read_forks(trunk.output_dir)[0]
    path = Path(fork.path)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    branch = branch_config(trunk, fork, str(tmp_path / "branch"))
    with pytest.raises(CheckpointError) as error:
        run_trial(branch, resume=False)
    message = str(error.value)
    assert str(path) in message and fork.sha256 in message and file_sha256(path) in message
    assert "rerun the trunk" in message
    assert not (tmp_path / "branch" / CHECKPOINT_FILE).exists()


def test_a_branch_that_differs_from_its_trunk_is_refused_by_field(base, tmp_path):
    trunk = trunk_config(base, [SHORT, LONG], str(tmp_path / "trunk"))
    with pytest.raises(Interrupt):
        run_trial(trunk, callback=Recorder(interrupt_fork=8), resume=False)
    fork = read_forks(trunk.output_dir)[0]
    branch = branch_config(trunk, fork, str(tmp_path / "branch"))
    with pytest.raises(ConfigError, match=r"differs from the trunk .* in \['base_lr', 'seed'\]"):
        run_trial(branch.replace(base_lr=1e-2, seed=5), resume=False)
    with pytest.raises(ConfigError, match="fork_step is 8, but budget 240 .* forks at step 12"):
        run_trial(branch.replace(budget_value=LONG), resume=False)
    # a trunk of another config refuses the forks that its output_dir already holds
    with pytest.raises(TrialError, match="written by a trunk with different \\['seed'\\]"):
        run_trial(trunk.replace(seed=7), resume=False)


def test_budgets_whose_fork_steps_collide_are_a_config_error(base, tmp_path):
    # 10 and 11 steps at decay_fraction 0.25 both fork at step 8
    trunk = trunk_config(base.replace(decay_fraction=0.25), [16 * 10, 16 * 11], str(tmp_path / "trunk"))
    with pytest.raises(ConfigError, match="both fork at step 8"):
        run_trial(trunk, resume=False)
    assert not (tmp_path / "trunk" / "forks").exists()


def test_fork_records_name_the_trunk_and_the_hash(base, tmp_path):
    trunk = trunk_config(base, [SHORT, LONG], str(tmp_path / "trunk"))
    with pytest.raises(Interrupt):
        run_trial(trunk, callback=Recorder(interrupt_fork=8), resume=False)
    record = json.loads(fork_file(trunk.output_dir, 8).with_suffix(".json").read_text())
    assert record["sha256"] == file_sha256(fork_file(trunk.output_dir, 8))
    assert record["step"] == 8 and record["budget_value"] == SHORT
    assert record["trial_config"] == trunk.to_dict()


def test_a_fork_is_never_overwritten(base, tmp_path):
    trunk = trunk_config(base, [SHORT, LONG], str(tmp_path / "trunk"))
    with pytest.raises(Interrupt):
        run_trial(trunk, callback=Recorder(interrupt_fork=8), resume=False)
    fork = read_forks(trunk.output_dir)[0]
    state = load_checkpoint(fork.path)
    state["model"] = {name: torch.zeros_like(tensor) for name, tensor in state["model"].items()}
    with pytest.raises(CheckpointError, match="already exists; a fork is written once"):
        write_fork(trunk.output_dir, SHORT, state)
    assert file_sha256(fork.path) == fork.sha256 and read_forks(trunk.output_dir) == [fork]
    assert list(Path(fork.path).parent.glob(".*.tmp")) == []
