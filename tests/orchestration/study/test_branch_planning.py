"""Planning the `branches` strategy (orchestration.study.branches): keys, fork steps, the shared
warm-up, the steps each trial trains, and the compute of both strategies against the issue's
arithmetic (1 - f) x B_k + f x (B_1 + ... + B_k) vs B_1 + ... + B_k."""

import pytest

from orchestration.study.branches import (
    BRANCH,
    TRUNK,
    StrategyCompute,
    branch_warmup_steps,
    plan_trunk,
    saving_text,
    strategy_compute,
    trunk_key,
)
from var_model.errors import ConfigError
from var_model.training.schedules import fork_step

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
