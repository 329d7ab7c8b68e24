"""MLflow on the driver side: the store, the study's parent run, one child run per trial.

Schema (analysis.mlflow_schema; docs/ARCHITECTURE.md): experiment = study name; parent run
tagged `varscale.kind=study`; child runs tagged `varscale.kind=trial`, `varscale.trial_key`,
`varscale.status`, `mlflow.parentRunId`, with typed params logged here, at creation; a trunk is
tagged `varscale.role=trunk`, a branch `varscale.role=branch` with `varscale.trunk_key` and
`varscale.fork_step` (under budgets.strategy branches; no role tag: an independent trial).

Why the driver creates everything first: 8 processes opening a NEW SQLite store at once lose 7
of 8 to a schema-migration race (docs/ARCHITECTURE.md, measured). The driver creates the store, the
experiment, the parent and every child run before any trial starts; trials then only append
metrics, tags and artifacts to their own run by explicit run id (tracking.trial_callback),
which concurrent SQLite writers do safely (tests/orchestration/test_tracking.py measures it).
The trial key is the identity: a relaunch finds the child run by its tag and reuses it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag

from analysis import mlflow_schema as schema
from orchestration.study.spec import StudySpec
from orchestration.study.trials import TrialSpec
from orchestration.tracking.attempts import AttemptLog
from orchestration.tracking.clients import tracking_client
from orchestration.tracking.run_notes import STUDY_HEADING, replace_section, study_summary

SQLITE_PREFIX = "sqlite:///"


def sqlite_path(tracking_uri: str) -> str | None:
    """The database file of a local SQLite store, None for any other store."""
    return tracking_uri[len(SQLITE_PREFIX) :] if tracking_uri.startswith(SQLITE_PREFIX) else None


def git_revision() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def trial_params(trial: TrialSpec, revision: str) -> dict[str, str]:
    """The child run's params, named as in analysis.mlflow_schema.TRIAL_PARAMS (strings in
    MLflow; analysis.loader casts them back)."""
    return {
        "depth": trial.depth,
        "width": trial.width,
        "heads": trial.heads,
        "params_total": trial.params_total,
        "params_per_token": trial.params_per_token,
        "flops_per_image": trial.flops_per_image,
        "flops_per_image_6n": trial.flops_per_image_6n,
        "budget_kind": trial.budget_kind,
        "budget_value": repr(float(trial.budget_value)),
        "steps": trial.steps,
        "batch_size": trial.batch_size,
        "lr": repr(trial.lr),
        "base_lr": repr(trial.base_lr),
        "seed": trial.seed,
        "git_revision": revision,
        "warmup_steps": trial.warmup_steps,
        "final_lr_fraction": repr(trial.final_lr_fraction),
        "cpus": trial.cpus,
        "gpus": trial.gpus,
    }


def role_tags(trial: TrialSpec) -> dict[str, str]:
    """A trunk's or branch's tags (none for an independent trial)."""
    if trial.branching is None:
        return {}
    tags = {schema.ROLE_TAG: trial.role, schema.TRUNK_KEY_TAG: trial.branching.trunk_key}
    if trial.role == schema.BRANCH_ROLE:
        tags[schema.FORK_STEP_TAG] = str(trial.branching.fork_step)
    return tags


def ensure_store(tracking_uri: str, storage: str) -> None:
    """Create a local SQLite store once, from this process alone (see the module docstring)."""
    Path(storage).mkdir(parents=True, exist_ok=True)
    if sqlite_path(tracking_uri):
        Path(sqlite_path(tracking_uri)).parent.mkdir(parents=True, exist_ok=True)
    # Any query opens the store, which creates and migrates the schema.
    tracking_client(tracking_uri).search_experiments(max_results=1)


class StudyTracker:
    """The driver's handle on one study's MLflow experiment."""

    def __init__(self, spec: StudySpec, schedule: str | None = None):
        self.spec = spec
        self.schedule = schedule or spec.recipe.schedule
        ensure_store(spec.tracking_uri, spec.storage)
        self.client = tracking_client(spec.tracking_uri)
        self.experiment_id = self._experiment()
        self.parent_run_id: str | None = None

    def _experiment(self) -> str:
        experiment = self.client.get_experiment_by_name(self.spec.name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            if experiment.tags.get(schema.EXPERIMENT_KIND_TAG) != schema.CUSTOM_MODEL_KIND:
                # a store from before the tag: tagged on relaunch, so the UI opens its runs too
                self.client.set_experiment_tag(
                    experiment.experiment_id, schema.EXPERIMENT_KIND_TAG, schema.CUSTOM_MODEL_KIND
                )
            return experiment.experiment_id
        location = None
        if self.spec.tracking_uri.startswith("sqlite:"):
            # Artifacts next to the database in the study's storage (not ./mlruns of whatever
            # directory a Ray worker happens to run in).
            location = Path(self.spec.storage, "mlartifacts").resolve().as_uri()
        # The kind tag: without it MLflow 3.x opens the experiment in its GenAI view (no runs).
        return self.client.create_experiment(
            self.spec.name, artifact_location=location, tags={schema.EXPERIMENT_KIND_TAG: schema.CUSTOM_MODEL_KIND}
        )

    def _search(self, filter_string: str) -> list:
        return self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=10_000)

    def start_parent(self) -> str:
        runs = self._search(f"tags.`{schema.KIND_TAG}` = '{schema.STUDY_KIND}'")
        if runs:
            self.parent_run_id = sorted(runs, key=lambda run: run.info.start_time)[0].info.run_id
            self.client.update_run(self.parent_run_id, status="RUNNING")
        else:
            run = self.client.create_run(
                self.experiment_id,
                run_name=self.spec.name,
                tags={schema.KIND_TAG: schema.STUDY_KIND, schema.STUDY_TAG: self.spec.name},
            )
            self.parent_run_id = run.info.run_id
        # The description the UI shows on the parent run: rewritten at each launch (the spec may
        # have grown), keeping the sections `varscale fit` added below it.
        note = self.client.get_run(self.parent_run_id).data.tags.get(schema.NOTE_TAG, "")
        self.client.set_tag(
            self.parent_run_id, schema.NOTE_TAG, replace_section(note, STUDY_HEADING, study_summary(self.spec))
        )
        return self.parent_run_id

    def trial_runs(self) -> dict[str, object]:
        """Child runs by trial key (one per key; the oldest wins if a crash ever made two)."""
        found: dict[str, object] = {}
        for run in sorted(
            self._search(f"tags.`{schema.KIND_TAG}` = '{schema.TRIAL_KIND}'"), key=lambda run: run.info.start_time
        ):
            found.setdefault(run.data.tags.get(schema.TRIAL_KEY_TAG), run)
        return found

    def create_trial_run(self, trial: TrialSpec, revision: str) -> str:
        assert self.parent_run_id is not None, "start_parent() first"
        tags = {
            schema.KIND_TAG: schema.TRIAL_KIND,
            schema.STUDY_TAG: self.spec.name,
            schema.TRIAL_KEY_TAG: trial.key,
            schema.STATUS_TAG: schema.PENDING,
            schema.PARENT_RUN_TAG: self.parent_run_id,
            **role_tags(trial),
        }
        run = self.client.create_run(self.experiment_id, run_name=trial.key, tags=tags)
        params = dict(trial_params(trial, revision), schedule=self.schedule)
        self.client.log_batch(run.info.run_id, params=[Param(key, str(value)) for key, value in params.items()])
        return run.info.run_id

    def reconcile(self, live_keys: set[str] = frozenset()) -> list[str]:
        """Runs left RUNNING by a killed driver are marked KILLED (they resume on relaunch)."""
        reconciled = []
        for key, run in self.trial_runs().items():
            unfinished = run.data.tags.get(schema.STATUS_TAG) not in schema.FINISHED_STATUSES
            if run.info.status == "RUNNING" and unfinished and key not in live_keys:
                self.client.set_tag(run.info.run_id, schema.STATUS_TAG, schema.FAILED)
                self.client.set_tag(run.info.run_id, schema.FAILURE_TAG, "interrupted (driver stopped)")
                self.client.set_terminated(run.info.run_id, status="KILLED")
                reconciled.append(key)
        return reconciled

    def mark(self, run_id: str, status: str, failure: str | None = None) -> None:
        if status == schema.FAILED:
            # the driver saw the trial end (a worker that died for good, Ctrl-C): an attempt the
            # worker could not close ends now, for the spend
            first_line = failure.strip().splitlines()[0] if failure and failure.strip() else ""
            reason = schema.redact_text(first_line, self.spec.tracking_uri) or schema.ATTEMPT_WORKER_DIED
            AttemptLog(self.client, run_id).close_open(reason, end=time.time())
        self.client.set_tag(run_id, schema.STATUS_TAG, status)
        if failure:
            failure = schema.redact_text(failure, self.spec.tracking_uri)
            self.client.set_tag(run_id, schema.FAILURE_TAG, failure[-schema.FAILURE_TAIL_LIMIT :])
        mlflow_status = schema.TERMINAL_RUN_STATUS.get(status)
        if mlflow_status:
            self.client.set_terminated(run_id, status=mlflow_status)

    def log_parent_artifact_text(self, text: str, file_name: str) -> None:
        self.client.log_text(self.parent_run_id, text, file_name)

    def finish_parent(self, interrupted: bool = False) -> None:
        self.client.set_terminated(self.parent_run_id, status="KILLED" if interrupted else "FINISHED")

    def log_parent_metrics(self, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.parent_run_id, metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()]
        )

    def log_parent_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.parent_run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])
