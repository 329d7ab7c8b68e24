"""How a launch records the end of each trial: in its LaunchResult, the progress display and MLflow.

One place for every way a trial stops (returned, failed, stranded, stopped by Ctrl-C, never
started), so the loop and the Ctrl-C path cannot disagree. The Ctrl-C path is the subtle one:
a probe found a trial that had just finished (result written, final metrics logged) marked as
failed, because every awaited trial was marked without asking whether it had returned. Here a
task that returned is recorded as what it returned, and one that finished between the last
poll and the cancel is recognised by its run's status tag, which the task sets before it
returns (execution.trial_task).
"""

from __future__ import annotations

import time

import ray
from ray.exceptions import GetTimeoutError, RayTaskError

from analysis import mlflow_schema as schema
from orchestration.execution.failures import failure_cause, record_failure
from orchestration.execution.launch_result import INTERRUPTED, NOT_STARTED, LaunchResult
from orchestration.execution.progress import Progress
from orchestration.study.trials import TrialSpec
from orchestration.tracking.study_runs import StudyTracker

INTERRUPTED_MESSAGE = "interrupted (Ctrl-C); relaunch to resume from its checkpoint"
# How long Ctrl-C waits for cancelled tasks to settle: a task that returned in the meantime is a
# result, not an interrupted trial.
CANCEL_SETTLE_SECONDS = 5.0


class TrialRecords:
    def __init__(
        self,
        result: LaunchResult,
        progress: Progress,
        tracker: StudyTracker,
        run_ids: dict[str, str],
        output_dirs: dict[str, str],
    ):
        self.result = result
        self.progress = progress
        self.tracker = tracker
        self.run_ids = run_ids
        self.output_dirs = output_dirs
        self.created: set[str] = set()  # keys whose run this launch created (MLflow: RUNNING until ended)

    def _state(self, key: str, status: str) -> None:
        self.result.recorded[key] = time.time()
        self.result.statuses[key] = status
        self.progress.set(key, status)

    def collect(self, trial: TrialSpec, ref) -> None:
        """A task Ray says is done: what it returned, or why it failed."""
        try:
            outcome = ray.get(ref)
        except Exception as error:  # a trial's failure is recorded; the study goes on
            self.failed(trial.key, error)
            return
        self.result.results[trial.key] = outcome
        self._state(trial.key, outcome["status"])

    def failed(self, key: str, error: BaseException) -> None:
        self.result.errors[key] = record_failure(error, self.output_dirs[key])
        self._state(key, schema.FAILED)
        self.tracker.mark(self.run_ids[key], schema.FAILED, f"{type(error).__name__}: {error}")

    def stranded(self, key: str, why: str) -> None:
        self.result.errors[key] = why
        self._state(key, schema.FAILED)
        self.tracker.mark(self.run_ids[key], schema.FAILED, why)

    def interrupt(self, refs: dict) -> None:
        """Ctrl-C: keep what returned, stop the rest, leave every unfinished run resumable."""
        done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0) if refs else ([], [])
        for ref in done:
            self.collect(refs.pop(ref), ref)
        for ref in refs:
            ray.cancel(ref, force=True)
        settled, _ = ray.wait(list(refs), num_returns=len(refs), timeout=CANCEL_SETTLE_SECONDS) if refs else ([], [])
        for ref, trial in refs.items():
            if ref in settled:
                try:
                    outcome = ray.get(ref, timeout=0)
                except RayTaskError as error:
                    if not isinstance(failure_cause(error), (ray.exceptions.TaskCancelledError, KeyboardInterrupt)):
                        self.failed(trial.key, error)  # it failed on its own before the cancel
                        continue
                except (ray.exceptions.RayError, GetTimeoutError):
                    pass  # cancelled, or its worker killed by the cancel: interrupted
                else:
                    self.result.results[trial.key] = outcome  # it returned just before the cancel
                    self._state(trial.key, outcome["status"])
                    continue
            self._stop(trial.key)
        refs.clear()

    def _stop(self, key: str) -> None:
        recorded = self.tracker.client.get_run(self.run_ids[key]).data.tags.get(schema.STATUS_TAG)
        if recorded in schema.FINISHED_STATUSES:
            self._state(key, recorded)  # it ended as the cancel came; its task had set the tag
            return
        self._state(key, INTERRUPTED)
        self.tracker.mark(self.run_ids[key], schema.FAILED, INTERRUPTED_MESSAGE)  # closes its attempt too
        self.tracker.client.set_terminated(self.run_ids[key], status="KILLED")  # stopped, not broken

    def never_started(self, keys: list[str]) -> None:
        """Trials the launch stopped before they started: still pending, not RUNNING in MLflow
        (MLflow makes a run RUNNING at creation; a stopped launch must not leave it so)."""
        for key in keys:
            if key in self.result.statuses:
                continue
            self._state(key, NOT_STARTED)
            if key in self.created:
                self.tracker.client.set_terminated(self.run_ids[key], status="KILLED")
