import math

import pytest

from var_model.errors import CheckpointError, ConfigError
from var_model.training.budget import StepCost, steps_for_budget
from var_model.training.schedules import LRSchedule


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
    assert all(a >= b for a, b in zip(factors, factors[1:]))


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
