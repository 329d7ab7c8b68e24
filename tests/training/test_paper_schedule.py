"""The paper's learning-rate schedule at its edges."""

from __future__ import annotations


def test_paper_schedule_with_a_fully_flat_fraction_holds_the_peak():
    from var_model.training.schedules import LRSchedule

    schedule = LRSchedule("paper", peak_lr=1.0, total_steps=10, warmup_steps=2, flat_fraction=1.0)
    # used to raise ZeroDivisionError at the last step
    assert [schedule.factor(step) for step in range(2, 10)] == [1.0] * 8
