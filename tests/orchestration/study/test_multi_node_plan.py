"""Trials over several nodes, the study's side (issue 14): resources.gpus_per_node splits a
trial's GPUs into nodes (placement-group bundles), TrialSpec exposes them for the execution
layer, a split that does not divide is refused, and dry-run shows the node counts."""

from pathlib import Path

import pytest

from orchestration.cli import main
from orchestration.study.loading import load_study
from orchestration.study.trial_config import plan_study
from orchestration.study.trials import expand
from var_model.errors import ConfigError

ROOT = Path(__file__).parents[3]
PAPER_STUDY = str(ROOT / "studies" / "var_imagenet256.yaml")
TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")


def tiny_trials(tmp_path, *overrides: str):
    return plan_study(load_study(TINY, [f"storage={tmp_path}", *overrides]))


def test_the_paper_study_gives_d24_two_nodes_and_d30_four(tmp_path):
    trials = {trial.depth: trial for trial in expand(load_study(PAPER_STUDY, [f"storage={tmp_path}"]))}
    placed = {depth: (trial.gpus, trial.gpus_per_node, trial.nodes) for depth, trial in trials.items()}
    assert {depth: placed[depth] for depth in (6, 20, 24, 26, 30)} == {
        6: (1, 8, 1),
        20: (8, 8, 1),
        24: (16, 8, 2),
        26: (16, 8, 2),
        30: (32, 8, 4),
    }
    for trial in trials.values():
        # the memory plan is per GPU over all the trial's GPUs, on every node
        execution = trial.execution
        assert execution.micro_batch_size * execution.accumulation_steps * trial.gpus == trial.batch_size
        assert execution.plan.memory.total_bytes < execution.plan.gpu_memory_bytes


def test_a_trial_that_fits_one_node_has_one(tmp_path):
    trials = tiny_trials(tmp_path, "resources.gpus={1: 0, 2: 4}", "resources.gpus_per_node=4")
    assert {trial.depth: trial.nodes for trial in trials} == {1: 1, 2: 1}


def test_gpus_split_into_nodes_of_gpus_per_node(tmp_path):
    trials = tiny_trials(tmp_path, "resources.gpus={1: 0, 2: 8}", "resources.gpus_per_node=4")
    (deep, *_) = [trial for trial in trials if trial.depth == 2]
    assert (deep.gpus, deep.gpus_per_node, deep.nodes) == (8, 4, 2)


def test_without_gpus_per_node_the_cluster_decides(tmp_path):
    trials = tiny_trials(tmp_path, "resources.gpus={1: 1, 2: 8}")
    assert {trial.depth: (trial.gpus_per_node, trial.nodes) for trial in trials} == {1: (None, 1), 2: (None, None)}


def test_gpus_that_do_not_divide_into_nodes_are_refused(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"^resources\.gpus: 12 GPUs at depth 2 span nodes of resources\.gpus_per_node 8 but do not divide "
        r"into them; use a multiple of 8",
    ):
        load_study(TINY, [f"storage={tmp_path}", "resources.gpus={1: 0, 2: 12}", "resources.gpus_per_node=8"])


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", r"resources\.gpus_per_node: must be >= 1, got 0"), ("eight", r"expected an integer, got 'eight'")],
)
def test_gpus_per_node_must_be_a_positive_integer(tmp_path, value, message):
    with pytest.raises(ConfigError, match=message):
        load_study(TINY, [f"storage={tmp_path}", f"resources.gpus_per_node={value}"])


def test_dry_run_shows_the_node_counts(tmp_path, capsys):
    assert main(["dry-run", PAPER_STUDY, "--set", f"storage={tmp_path}"]) == 0
    output = capsys.readouterr().out
    d30 = next(line for line in output.splitlines() if line.startswith("d30-b6.4e7-s0"))
    assert "cpu 32, gpu 32 on 4 nodes" in d30
    assert "nodes: 6 trials span nodes of resources.gpus_per_node 8 GPUs (up to 4, d30-b6.4e7-s0)" in output


def test_dry_run_says_the_cluster_decides_without_gpus_per_node(tmp_path, capsys):
    assert main(["dry-run", PAPER_STUDY, "--set", f"storage={tmp_path}", "--set", "resources.gpus_per_node=null"]) == 0
    output = capsys.readouterr().out
    assert "gpu 32 on" not in output
    assert "nodes: resources.gpus_per_node is not set, so launch reads it from the cluster" in output


def test_each_process_of_a_trial_gets_its_share_of_the_cpus(tmp_path):
    # one process per GPU: 16 CPUs over 16 GPUs is one thread each, not 16 threads in each of 16 ranks
    trials = {trial.depth: trial for trial in expand(load_study(PAPER_STUDY, [f"storage={tmp_path}"]))}
    assert {depth: trials[depth].threads for depth in (6, 12, 24, 30)} == {6: 8, 12: 4, 24: 1, 30: 1}
    (cpu_trial, *_) = tiny_trials(tmp_path, "resources.cpus=2")
    assert cpu_trial.threads == 2
