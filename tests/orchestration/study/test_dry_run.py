"""`varscale dry-run` on the paper's d6..d30 family prints the spec's parameter counts and
the counted FLOPs, from configs alone (no 2B-parameter model is built)."""

import json
from pathlib import Path

from orchestration.cli import main
from orchestration.study.dry_run import dry_run_rows
from orchestration.study.loading import load_study
from orchestration.study.trials import expand
from var_model.counting import flops_per_image

STUDY = Path(__file__).parents[1] / "fixtures" / "var_scaling_d6_d30.yaml"

# docs/MODEL.md §2: totals for 1000 classes, 256px, V=4096, Cvae=32.
PAPER_PARAMS = {
    int(depth): count
    for depth, count in json.loads(
        (Path(__file__).parents[2] / "data" / "var_paper_param_counts.json").read_text()
    ).items()
    if not depth.startswith("_")
}


def closed_form_params(depth: int) -> int:
    width = 64 * depth
    return depth * (18 * width**2 + 14 * width + depth) + 2 * width**2 + 5823 * width + 4096


def test_rows_carry_the_papers_parameter_counts_and_counted_flops():
    spec = load_study(str(STUDY))
    rows = dry_run_rows(spec)
    by_depth = {row["depth"]: row for row in rows}
    for depth, params in PAPER_PARAMS.items():
        assert by_depth[depth]["params"] == params
    configs = {trial.key: trial for trial in expand(spec)}
    for row in rows:
        trial = configs[row["trial"]]
        assert row["params"] == closed_form_params(row["depth"])
        assert row["flops_per_image"] == flops_per_image(trial.var_config, training=True)
        # whole steps only: a trial never spends more than its budget
        assert row["flops"] == row["images"] * row["flops_per_image"] <= trial.budget_value
    assert len(rows) == 24
    # the recipe's rules by depth: batch 1024 and base lr 8e-5 at d30 -> lr 3.2e-4
    assert (by_depth[30]["batch"], by_depth[30]["lr"]) == (1024, 8e-5 * 1024 / 256)


def test_cli_prints_table_and_totals(capsys):
    assert main(["dry-run", str(STUDY)]) == 0
    output = capsys.readouterr().out
    for params in PAPER_PARAMS.values():
        assert f"{params:,}" in output
    assert "d30-b1e19-s0" in output and "gpu 8" in output
    total_line = output.strip().splitlines()[-1]
    assert total_line.startswith("var_scaling_dry_run: 24 trials, ")
    assert "PFLOP" in total_line and "GPU-hours + 0 CPU-hours, longest trial" in total_line
    assert "time at the stated 4e+14 FLOP/s per GPU (resources.flops_per_second" in output


def test_cli_reports_bad_study_without_traceback(capsys):
    assert main(["dry-run", str(STUDY), "--set", "model.depths=[]"]) == 2
    assert "model.depths: must not be empty" in capsys.readouterr().err


def test_launch_submits_the_costliest_trials_first():
    from orchestration.execution.launcher import submission_order

    trials = expand(load_study(str(STUDY.parent / "tiny_study.yaml")))
    ordered = submission_order(trials)
    assert sorted(t.key for t in ordered) == sorted(t.key for t in trials)
    assert [t.flops for t in ordered] == sorted((t.flops for t in trials), reverse=True)
    assert ordered[0].depth == max(t.depth for t in trials)
