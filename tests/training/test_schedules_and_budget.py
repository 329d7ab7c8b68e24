import math

import pytest

from var_model.errors import CheckpointError, ConfigError
from var_model.training.budget import StepCost, steps_for_budget
from var_model.training.schedules import LRSchedule, fork_step, fork_steps


def test_warmup_is_linear_from_the_start_factor():
    schedule = LRSchedule("paper", peak_lr=2.0, total_steps=100, warmup_steps=10, warmup_start_factor=0.005)
    assert schedule.lr(0) == pytest.approx(0.01)
    assert schedule.lr(5) == pytest.approx(2.0 * (0.005 + 0.995 * 0.5))
    assert schedule.lr(10) == pytest.approx(2.0)


def test_paper_schedule_is_flat_for_five_percent_then_linear_to_the_final_fraction():
    schedule = LRSchedule("paper", peak_lr=1.0, total_steps=1001, warmup_steps=0, final_lr_fraction=0.1)
    assert schedule.factor(0) == 1.0 and schedule.factor(49) == 1.0
    assert schedule.factor(1000) == pytest.approx(0.1)
    # linear after the flat part: the midpoint of the decay is the midpoint of the range
    middle = 50 + (1000 - 50) / 2
    assert schedule.factor(int(middle)) == pytest.approx(0.55, abs=1e-3)
    factors = [schedule.factor(step) for step in range(1001)]
    assert all(a >= b for a, b in zip(factors, factors[1:], strict=False))


def test_cosine_and_wsd_end_at_the_final_fraction():
    cosine = LRSchedule("cosine", 1.0, 201, 0, final_lr_fraction=0.0)
    assert cosine.factor(100) == pytest.approx(0.5) and cosine.factor(200) == pytest.approx(0.0)
    wsd = LRSchedule("wsd", 1.0, 100, 5, final_lr_fraction=0.1, decay_fraction=0.2)
    assert wsd.factor(79) == 1.0 and wsd.factor(80) < 1.0
    assert wsd.factor(99) == pytest.approx(0.1)


def test_schedule_errors_and_resume_check():
    with pytest.raises(ConfigError, match="schedule"):
        LRSchedule("step", 1.0, 10, 0)
    with pytest.raises(ConfigError, match="warmup_steps"):
        LRSchedule("paper", 1.0, 10, 11)
    schedule = LRSchedule("paper", 1.0, 10, 1)
    with pytest.raises(CheckpointError, match="schedule"):
        schedule.check_matches(LRSchedule("cosine", 1.0, 10, 1).state_dict())


def test_steps_floor_the_budget_for_each_kind():
    cost = StepCost.for_batch(batch_size=8, tokens_per_image=21, flops_per_image=1000)
    assert steps_for_budget("images", 100, cost) == 12
    assert steps_for_budget("tokens", 8 * 21 * 5 + 1, cost) == 5
    assert steps_for_budget("flops", 8000 * 3.9, cost) == 3
    assert cost.counters(3) == {"images": 24.0, "tokens": 504.0, "flops": 24000.0}


def test_a_budget_below_one_step_is_a_clear_error():
    cost = StepCost.for_batch(8, 21, 1000)
    with pytest.raises(ConfigError, match="smaller than one step"):
        steps_for_budget("flops", 7999, cost)
    with pytest.raises(ConfigError, match="budget_kind"):
        steps_for_budget("epochs", 1, cost)
    with pytest.raises(ConfigError, match="budget_value"):
        steps_for_budget("images", math.nan, cost)


def test_wsd_decay_shapes_follow_their_formulas_from_the_fork_step():
    total, final = 50, 0.1
    start = fork_step(total, 0.2)
    assert start == 40
    shapes = {
        "linear": lambda x: 1 - x,
        "sqrt": lambda x: 1 - math.sqrt(x),
        "cosine": lambda x: 0.5 * (1 + math.cos(math.pi * x)),
    }
    for shape, g in shapes.items():
        schedule = LRSchedule("wsd", 1.0, total, 5, final_lr_fraction=final, decay_fraction=0.2, decay_shape=shape)
        assert schedule.factor(start - 1) == 1.0
        for step in range(start, total):
            progress = (step - start + 1) / (total - start)
            assert schedule.factor(step) == pytest.approx(final + (1 - final) * g(progress), abs=1e-12), shape
        assert schedule.factor(total - 1) == pytest.approx(final)
    # the sqrt cooldown lies below the linear one inside the decay (it drops fast, then slowly)
    sqrt = LRSchedule("wsd", 1.0, total, 5, decay_fraction=0.2, decay_shape="sqrt")
    linear = LRSchedule("wsd", 1.0, total, 5, decay_fraction=0.2)
    assert all(sqrt.factor(step) < linear.factor(step) for step in range(start, total - 1))
    with pytest.raises(ConfigError, match="decay_shape is 'step'; allowed: linear, sqrt, cosine"):
        LRSchedule("wsd", 1.0, total, 5, decay_shape="step")


@pytest.mark.parametrize("total, fraction", [(10, 0.2), (11, 0.25), (7, 0.3), (1000, 0.2), (33, 0.5)])
def test_the_wsd_decay_starts_exactly_at_the_fork_step(total, fraction):
    start = fork_step(total, fraction)
    assert start == round((1 - fraction) * total)
    schedule = LRSchedule("wsd", 1.0, total, 0, decay_fraction=fraction, decay_shape="sqrt")
    assert next(step for step in range(total) if schedule.factor(step) < 1.0) == start


def test_a_trunk_schedule_has_every_budgets_lr_before_its_fork():
    budgets = {100.0: 40, 200.0: 80, 400.0: 160}
    forks = fork_steps(budgets, 0.2, warmup_steps=6)
    assert forks == {100.0: 32, 200.0: 64, 400.0: 128}
    trunk = LRSchedule("wsd", 0.3, budgets[400.0], 6, decay_fraction=0.2)
    for budget, steps in budgets.items():
        independent = LRSchedule("wsd", 0.3, steps, 6, decay_fraction=0.2, decay_shape="sqrt")
        assert all(trunk.lr(step) == independent.lr(step) for step in range(forks[budget]))
        assert independent.lr(forks[budget]) < trunk.lr(forks[budget])


def test_fork_points_that_collide_or_fall_outside_the_run_are_errors():
    with pytest.raises(ConfigError, match="budgets 160 and 176 both fork at step 8 .* drop one"):
        fork_steps({160.0: 10, 176.0: 11}, 0.25, warmup_steps=0)
    for fraction in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match="decay_fraction"):
            fork_steps({160.0: 10}, fraction, warmup_steps=0)
    with pytest.raises(ConfigError, match="before the end of the warm-up"):
        fork_steps({160.0: 10}, 0.2, warmup_steps=9)
    with pytest.raises(ConfigError, match="has no decay step"):
        fork_steps({32.0: 2}, 0.2, warmup_steps=0)


def test_a_checkpoint_from_before_decay_shapes_resumes_as_linear():
    schedule = LRSchedule("wsd", 1.0, 10, 1)
    old_state = {key: value for key, value in schedule.state_dict().items() if key != "decay_shape"}
    schedule.check_matches(old_state)
    with pytest.raises(CheckpointError, match="schedule"):
        LRSchedule("wsd", 1.0, 10, 1, decay_shape="sqrt").check_matches(old_state)
