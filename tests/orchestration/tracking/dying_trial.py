"""A trial whose worker is killed (SIGKILL) after two logged steps: the process dies as a
preempted node's would, without closing its attempt. Run in a spawned process by the tests."""

from __future__ import annotations

import os
import signal

from orchestration.execution.trial_task import execute_trial


def killed_after_two_steps(config, callback=None, resume: bool = True):
    callback.on_start({"steps": 4, "resumed_step": 0})
    for step in (1, 2):
        callback.on_metrics(step, {"train_loss": 3.0 / step, "images": 8.0 * step})
    os.kill(os.getpid(), signal.SIGKILL)


def run_dying_attempt(request) -> None:
    execute_trial(request, killed_after_two_steps)
