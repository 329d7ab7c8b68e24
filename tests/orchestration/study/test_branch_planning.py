"""Planning the `branches` strategy (orchestration.study.branches): keys, fork steps, the shared
warm-up, the steps each trial trains, and the compute of both strategies against the issue's
arithmetic (1 - f) x B_k + f x (B_1 + ... + B_k) vs B_1 + ... + B_k."""

from pathlib import Path

import pytest

from orchestration.study.branches import (
    BRANCH,
    INDEPENDENT,
    TRUNK,
    StrategyCompute,
    branch_warmup_steps,
    plan_trunk,
    saving_text,
    strategy_compute,
    trunk_key,
)
from orchestration.study.dry_run import dry_run_rows, dry_run_table, strategy_compute_of, strategy_text
from orchestration.study.loading import load_study
from orchestration.study.trial_config import build_trial_config, plan_study
from var_model.errors import ConfigError
from var_model.training.config_choices import TRIAL_ROLES
from var_model.training.forks import fork_file
from var_model.training.schedules import fork_step

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")

# the demo's budgets at batch 8: 250, 375, 500, 750 steps
DEMO_STEPS = {2000.0: 250, 3000.0: 375, 4000.0: 500, 6000.0: 750}


def test_trunk_trains_to_the_largest_fork_and_each_branch_its_cooldown():
    plan = plan_trunk(3, 1, {6000.0: 750, 2000.0: 250, 4000.0: 500, 3000.0: 375}, 0.2, warmup_fraction=0.05)
    assert plan.key == trunk_key(3, 1) == "d3-trunk-s1"
    assert plan.budgets == (2000.0, 3000.0, 4000.0, 6000.0)  # smallest first, whatever the input order
    assert plan.fork_steps == {2000.0: 200, 3000.0: 300, 4000.0: 400, 6000.0: 600}
    trunk = plan.trunk()
    assert (trunk.role, trunk.trunk_key, trunk.start_step, trunk.end_step) == (TRUNK, "d3-trunk-s1", 0, 600)
    assert trunk.fork_budgets == plan.budgets and trunk.fork_step is None
    for budget, steps in DEMO_STEPS.items():
        branch = plan.branch(budget)
        assert (branch.role, branch.trunk_key) == (BRANCH, "d3-trunk-s1")
        assert branch.fork_step == branch.start_step == fork_step(steps, 0.2)
        assert branch.end_step == steps and branch.steps_trained == steps - fork_step(steps, 0.2)
    # 600 trunk steps + 50 + 75 + 100 + 150 of cooldown, against 1875 steps run independently
    assert (plan.steps_trained, plan.independent_steps) == (975, 1875)


def test_warm_up_is_the_recipes_steps_or_the_smallest_budgets_fraction():
    assert branch_warmup_steps(DEMO_STEPS, 0.05, None) == round(0.05 * 250) == 12
    assert branch_warmup_steps(DEMO_STEPS, 0.05, 30) == 30
    assert branch_warmup_steps(DEMO_STEPS, 0.05, 0) == 0  # an explicit 0 is not "unset"
    assert plan_trunk(1, 0, DEMO_STEPS, 0.2, 0.05).warmup_steps == 12
    assert plan_trunk(1, 0, DEMO_STEPS, 0.2, 0.05, warmup_steps=40).warmup_steps == 40


@pytest.mark.parametrize(
    "budgets, fraction",
    [((2000, 6000), 0.2), ((2000, 3000, 4000, 6000), 0.2), ((6.4e7, 2.56e8), 0.2), ((1, 2, 4, 8, 16), 0.1)],
)
def test_strategy_compute_is_the_issues_arithmetic(budgets, fraction):
    compute = strategy_compute(tuple(budgets), fraction)
    total = sum(budgets)
    assert compute.independent == total
    assert compute.branches == pytest.approx((1 - fraction) * max(budgets) + fraction * total, rel=1e-15)
    assert compute.saving == pytest.approx(1 - ((1 - fraction) * max(budgets) + fraction * total) / total, rel=1e-15)


def test_known_savings_of_the_demo_and_the_papers_budgets():
    # the demo today: 2000 + 6000 images independently; with branches at f = 0.2, 4 budgets
    # in 0.8 x 6000 + 0.2 x 15000 = 7800 images
    demo = strategy_compute((2000.0, 3000.0, 4000.0, 6000.0), 0.2)
    assert (demo.independent, demo.branches) == (15000.0, 7800.0)
    assert demo.branches < strategy_compute((2000.0, 6000.0), 0.2).independent
    # the paper's 50 and 200 epochs: 0.8 x 2.56e8 + 0.2 x 3.2e8 = 2.688e8 of 3.2e8: 16% saved
    paper = strategy_compute((6.4e7, 2.56e8), 0.2)
    assert paper.saving == pytest.approx(0.16)
    assert saving_text(paper, "images") == "independent 3.2e+08 images, branches 2.688e+08 images: branches save 16.0%"


def test_whole_steps_match_the_arithmetic_when_budgets_divide_into_steps():
    plan = plan_trunk(1, 0, DEMO_STEPS, 0.2, 0.05)
    compute = strategy_compute(plan.budgets, 0.2)
    # 8 images a step: the steps that run are the arithmetic's images / 8, exactly
    assert (plan.steps_trained * 8, plan.independent_steps * 8) == (compute.branches, compute.independent)


def test_compute_of_several_trunks_adds_up():
    total = strategy_compute((1.0, 3.0), 0.5) + strategy_compute((2.0, 4.0), 0.5)
    # (0.5 x 3 + 0.5 x 4) + (0.5 x 4 + 0.5 x 6) = 3.5 + 5 of 4 + 6
    assert total == StrategyCompute(10.0, 8.5)
    assert total.saving == pytest.approx(0.15)


def test_budgets_that_fork_at_one_step_are_named_with_the_fix():
    with pytest.raises(ConfigError) as error:
        plan_trunk(2, 0, {1016.0: 127, 1024.0: 128, 4000.0: 500}, 0.2, 0.0)
    message = str(error.value)
    assert message.startswith("budgets.values: budgets 1016 (127 steps) and 1024 (128 steps) both fork at step 102")
    assert "at depth 2" in message and "recipe.decay_fraction 0.2" in message and "drop one of them" in message


def test_a_fork_inside_the_warm_up_names_where_the_warm_up_comes_from():
    with pytest.raises(ConfigError, match=r"^budgets.values: at depth 1 .*warm-up 300 steps from recipe.warmup_steps"):
        plan_trunk(1, 0, DEMO_STEPS, 0.2, 0.05, warmup_steps=300)
    with pytest.raises(ConfigError, match=r"warm-up 225 steps from recipe.warmup_fraction.*forks at step 200"):
        plan_trunk(1, 0, DEMO_STEPS, 0.2, 0.9)


def test_a_budget_too_small_for_a_decay_step_is_refused():
    with pytest.raises(ConfigError, match=r"budget 8 \(1 steps\) with decay_fraction 0.2 has no decay step"):
        plan_trunk(1, 0, {8.0: 1, 800.0: 100}, 0.2, 0.0)


# --- the strategy in a study file ---------------------------------------------------------------

BRANCHES = ["budgets.strategy=branches", "recipe.schedule=wsd", "budgets.values=[16, 32, 48, 64]"]


def test_strategy_defaults_to_independent_and_the_recipe_to_trialconfigs_cooldown(tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}"])
    assert spec.budgets.strategy == "independent"
    assert (spec.recipe.decay_fraction, spec.recipe.decay_shape, spec.recipe.warmup_steps) == (0.2, "linear", None)
    assert all(trial.role == "independent" and trial.branching is None for trial in plan_study(spec))


def test_a_branches_study_plans_one_trunk_per_depth_and_seed_and_a_branch_per_budget(tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}", *BRANCHES, "recipe.decay_fraction=0.5", "seeds=[0, 1]"])
    trials = plan_study(spec)
    assert [trial.key for trial in trials if trial.depth == 1] == [
        "d1-trunk-s0", "d1-b16-s0", "d1-b32-s0", "d1-b48-s0", "d1-b64-s0",
        "d1-trunk-s1", "d1-b16-s1", "d1-b32-s1", "d1-b48-s1", "d1-b64-s1",
    ]  # fmt: skip
    by_key = {trial.key: trial for trial in trials}
    trunk, branch = by_key["d2-trunk-s1"], by_key["d2-b48-s1"]
    # batch 8: 2, 4, 6, 8 steps; forks at 1, 2, 3, 4; the trunk trains to 4
    assert (trunk.role, trunk.budget_value, trunk.steps, trunk.steps_trained, trunk.images) == ("trunk", 64, 4, 4, 32)
    assert (branch.role, branch.steps, branch.steps_trained, branch.images) == ("branch", 6, 3, 48)
    assert branch.flops_trained == 3 * 8 * branch.flops_per_image and branch.flops == 6 * 8 * branch.flops_per_image
    trunk_config, branch_config = build_trial_config(spec, trunk), build_trial_config(spec, branch)
    assert (trunk_config.role, trunk_config.fork_budgets, trunk_config.budget_value) == ("trunk", (16, 32, 48, 64), 64)
    assert (branch_config.role, branch_config.fork_step, branch_config.schedule) == ("branch", 3, "wsd")
    assert branch_config.fork_path == str(fork_file(Path(tmp_path, "trials", "d2-trunk-s1"), 3))
    # one warm-up for the trunk and its branches: warmup_fraction 0 of the smallest budget here
    assert {trunk_config.warmup_steps, branch_config.warmup_steps} == {0}


def test_recipe_warmup_steps_is_every_trials_warm_up(tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}", *BRANCHES, "recipe.decay_fraction=0.5", "recipe.warmup_steps=1"])
    assert {build_trial_config(spec, trial).warmup_steps for trial in plan_study(spec)} == {1}
    independent = load_study(TINY, [f"storage={tmp_path}", "recipe.warmup_steps=1"])
    assert {trial.warmup_steps for trial in plan_study(independent)} == {1}


@pytest.mark.parametrize(
    "changes, message",
    [
        (["recipe.schedule=paper"], "recipe.schedule: 'paper', but budgets.strategy branches needs schedule wsd"),
        (["recipe.decay_fraction=0"], "recipe.decay_fraction: 0.0, but budgets.strategy branches needs it in (0, 1)"),
        (["recipe.decay_fraction=1"], "recipe.decay_fraction: 1.0, but budgets.strategy branches needs it in (0, 1)"),
        (["recipe.decay_fraction=1.5"], "recipe.decay_fraction: must be in [0, 1], got 1.5"),
        (["budgets.strategy=forks"], "budgets.strategy: 'forks' is not allowed; choose one of independent, branches"),
        (["recipe.decay_shape=step"], "recipe.decay_shape: 'step' is not allowed; choose one of linear, sqrt, cosine"),
        (["budgets.values=[40, 48]", "recipe.decay_fraction=0.25"], "budgets.values: budgets 40 (5 steps) and 48"),
        (["trial.fork_step=3"], "trial.fork_step: set by the study"),
    ],
)
def test_branch_mistakes_name_their_field(tmp_path, changes, message):
    with pytest.raises(ConfigError) as error:
        plan_study(load_study(TINY, [f"storage={tmp_path}", *BRANCHES, *changes]))
    assert message in str(error.value)


def test_dry_run_prints_both_strategies_and_the_saving_of_the_arithmetic(tmp_path):
    # 4 budgets at f = 0.5 per depth and seed: 0.5 x 64 + 0.5 x 160 = 112 of 160 images: 30% saved
    spec = load_study(TINY, [f"storage={tmp_path}", *BRANCHES, "recipe.decay_fraction=0.5", "seeds=[0, 1]"])
    compute = strategy_compute_of(spec)
    assert (compute.independent, compute.branches) == (4 * 160.0, 4 * 112.0)
    trials = plan_study(spec)
    text = strategy_text(spec, trials)
    assert text.startswith("compute: independent 640 images, branches 448 images: branches save 30.0% ")
    # the FLOPs that run, on whole steps, save the same here (budgets divide into steps)
    assert text.split("; on whole steps ")[1].endswith(": branches save 30.0%")
    # what runs, on whole steps (8 images each): the trunk to step 4, then cooldowns of 1, 2, 3, 4 steps
    rows = dry_run_rows(spec)
    run = {row["trial"]: row["steps_trained"] for row in rows if row["depth"] == 1 and row["trial"].endswith("s0")}
    assert run == {"d1-trunk-s0": 4, "d1-b16-s0": 1, "d1-b32-s0": 2, "d1-b48-s0": 3, "d1-b64-s0": 4}
    trunks = [trial for trial in trials if trial.role == "trunk"]
    assert sum(row["flops_trained"] for row in rows) == sum(14 * 8 * trunk.flops_per_image for trunk in trunks)
    table = dry_run_table(spec)
    assert text in table and "steps run" in table.splitlines()[0]


def test_dry_run_time_counts_the_steps_that_run(tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}", *BRANCHES, "recipe.decay_fraction=0.5"])
    rows = {row["trial"]: row for row in dry_run_rows(spec)}
    branch, trunk, short = rows["d2-b64-s0"], rows["d2-trunk-s0"], rows["d2-b16-s0"]
    # same depth, same CPU: time in proportion to the steps each runs (4, 4 and 1)
    assert branch["seconds"] == pytest.approx(trunk["seconds"], rel=1e-12)
    assert branch["seconds"] == pytest.approx(4 * short["seconds"], rel=1e-12)
    assert branch["flops"] == 2 * branch["flops_trained"]


def test_an_independent_study_shows_what_branches_would_save(tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}"])
    text = strategy_text(spec, plan_study(spec))
    # 16 and 32 images at the default f = 0.2: 0.8 x 32 + 0.2 x 48 = 35.2 of 48 per depth
    assert text.startswith("compute: independent 96 images, branches 70.4 images: branches save 26.7% ")
    assert "set budgets.strategy: branches and recipe.schedule: wsd" in text


def test_the_roles_mlflow_records_are_the_trainers():
    assert (INDEPENDENT, TRUNK, BRANCH) == TRIAL_ROLES
