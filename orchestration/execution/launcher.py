"""`varscale launch`: the tokenizer stage once, then every trial of the study as a Ray task.

Why plain Ray tasks and not Ray Tune: a study here is a fixed grid, not a search, so Tune's
value (search algorithms, schedulers) goes unused while its costs are real: 8 one-second
trials took 12-33 s under Tune vs 5 s as tasks on this machine, its MLflow callback duplicated
runs after a restore, and it changes the working directory of trials (docs/ARCHITECTURE.md, measured).
Tasks give what a study needs directly: per-trial resources (fractional CPUs/GPUs, custom
resources), automatic resubmission when a worker or node dies (`max_retries`), and no retry
of Python exceptions (a bug fails the same way twice; a divergence is a result). Resume is
ours: the trial key is the identity, its checkpoint folder and MLflow run are found by key,
so a retried or relaunched trial continues its checkpoint in its own run.

Under `budgets.strategy: branches` a branch is submitted once its trunk has written its fork
(execution.branch_scheduling says how and why): trunks and independent trials are queued at
the start, each branch when the loop's poll finds its fork, and its fork is deleted once the
trunk and every branch of that fork have finished.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, TextIO

import ray

from analysis import mlflow_schema as schema
from orchestration.execution.branch_scheduling import study_scheduler
from orchestration.execution.launch_result import LaunchResult
from orchestration.execution.multi_node import execute_gpu_trial, trial_spans_nodes
from orchestration.execution.progress import Progress, ProgressTrial
from orchestration.execution.ray_runtime import check_resources, default_concurrency, node_resources, start_ray
from orchestration.execution.study_checks import cache_identity, check_roles, check_token_cache
from orchestration.execution.study_lock import StudyLock
from orchestration.execution.token_cache_stage import build_token_cache
from orchestration.execution.trial_records import TrialRecords
from orchestration.execution.trial_task import TrialRequest, execute_trial
from orchestration.study.branches import BRANCH
from orchestration.study.dry_run import dry_run_table
from orchestration.study.loading import spec_to_yaml
from orchestration.study.spec import StudySpec
from orchestration.study.trial_config import build_trial_config, plan_study, trial_output_dir
from orchestration.study.trials import TrialSpec
from orchestration.tracking.server_check import check_tracking_server
from orchestration.tracking.study_runs import StudyTracker, git_revision


def _remote_trial(request: TrialRequest, trial_function: Callable | None) -> dict:
    if request.gpus > 1:
        return execute_gpu_trial(request)  # torchrun on one node, or a group over several
    return execute_trial(request, trial_function)


def _task_options(trial: TrialSpec, max_retries: int) -> dict:
    options = {
        "num_cpus": trial.cpus,
        "max_retries": max_retries,
        "retry_exceptions": False,
        "name": f"trial {trial.key}",
    }
    if trial.gpus > 1 and trial_spans_nodes(trial):
        # The placement group this task makes holds the trial's GPUs and CPUs (execution.multi_node).
        return {**options, "num_cpus": 0}
    if trial.gpus:
        options["num_gpus"] = trial.gpus
    custom = {name: amount for name, amount in trial.custom_resources.items() if amount}
    if custom:
        options["resources"] = custom
    return options


def _save_resolved(spec: StudySpec) -> str:
    path = Path(spec.storage, schema.RESOLVED_SPEC_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(spec_to_yaml(spec))
    os.replace(temporary, path)  # atomic: a concurrent reader never sees half a file
    return str(path)


def launch(
    spec: StudySpec,
    address: str | None = None,
    max_concurrent: int | None = None,
    dashboard: bool = False,
    stream: TextIO | None = None,
    trial_function: Callable | None = None,
    tokenizer_function: Callable | None = None,
    poll_seconds: float = 1.0,
) -> LaunchResult:
    """Run every unfinished trial of `spec`; `trial_function` defaults to the real trainer."""
    check_tracking_server(spec.tracking_uri)  # seconds, before the lock, Ray, or any MLflow retry loop
    with StudyLock(spec.storage, spec.name):
        return _launch_locked(
            spec, address, max_concurrent, dashboard, stream, trial_function, tokenizer_function, poll_seconds
        )


def _launch_locked(
    spec: StudySpec,
    address: str | None,
    max_concurrent: int | None,
    dashboard: bool,
    stream: TextIO | None,
    trial_function: Callable | None,
    tokenizer_function: Callable | None,
    poll_seconds: float,
) -> LaunchResult:
    stream = stream or sys.stdout
    result = LaunchResult()
    started = time.monotonic()
    trials = plan_study(spec)
    _save_resolved(spec)
    tracker = StudyTracker(spec)
    # One search of the study's runs serves the checks and the plan: at 500 trials each search
    # costs seconds. Runs that reconcile() marks below were unfinished, and stay so here.
    existing = tracker.trial_runs()
    check_roles(spec, trials, existing)  # before the parent run: a refusal leaves nothing RUNNING
    tracker.start_parent()
    reconciled = tracker.reconcile()
    if reconciled:
        stream.write(f"marked {len(reconciled)} runs left RUNNING by a stopped launch as KILLED: {reconciled}\n")
    tracker.client.log_artifact(tracker.parent_run_id, str(Path(spec.storage, schema.RESOLVED_SPEC_FILE)))
    tracker.log_parent_artifact_text(dry_run_table(spec), schema.DRY_RUN_FILE)
    tracker.log_parent_tags(
        {
            schema.TRIAL_COUNT_TAG: len(trials),
            schema.BUDGET_KIND_TAG: spec.budgets.kind,
            schema.STRATEGY_TAG: spec.budgets.strategy,
        }
    )
    stream.write(
        f"study {spec.name}: {len(trials)} trials, MLflow {schema.redact_uri(spec.tracking_uri)}, "
        f"storage {spec.storage}\n"
    )

    todo = [
        trial
        for trial in trials
        if existing.get(trial.key) is None
        or existing[trial.key].data.tags.get(schema.STATUS_TAG) not in schema.FINISHED_STATUSES
    ]
    todo_keys = {trial.key for trial in todo}
    output_dirs = {trial.key: trial_output_dir(spec, trial) for trial in trials}
    progress = Progress(spec.name, progress_trials(trials, output_dirs), stream)
    for trial in trials:
        if trial.key not in todo_keys:
            status = existing[trial.key].data.tags[schema.STATUS_TAG]
            progress.skip(trial.key, status)
            result.statuses[trial.key] = status
            result.skipped.append(trial.key)
    if not todo:
        stream.write(f"all {len(trials)} trials already finished; nothing to run\n")
        tracker.finish_parent()
        result.seconds = time.monotonic() - started
        return result

    started_ray = not ray.is_initialized()
    refs: dict = {}
    run_ids: dict[str, str] = {}
    records = TrialRecords(result, progress, tracker, run_ids, output_dirs)
    try:
        result.ray_start_seconds = start_ray(address=address, dashboard=dashboard)
        if started_ray:
            stream.write(f"Ray started in {result.ray_start_seconds:.1f} s\n")
        check_resources(todo, node_resources(), spec.resources.gpus_per_node)
        stage = build_token_cache(spec, tracker, tokenizer_function, stream)
        result.token_cache = stage["cache_path"]
        cache = cache_identity(stage)
        check_token_cache(spec, existing, cache)  # before any run is created or trained
        revision = git_revision()
        for trial in todo:  # one by one: a Ctrl-C here still knows which runs exist
            if trial.key in existing:
                run_ids[trial.key] = existing[trial.key].info.run_id
            else:
                run_ids[trial.key] = tracker.create_trial_run(trial, revision)
                records.created.add(trial.key)
        remote = ray.remote(_remote_trial)
        finished = {key: result.statuses[key] for key in result.skipped}
        branches = study_scheduler(spec, trials, finished, result.token_cache)
        forks = {}  # branch key -> the fork it starts from
        pending = submission_order([trial for trial in todo if trial.role != BRANCH])
        limit = max_concurrent or default_concurrency(todo, ray.cluster_resources())
        progress.concurrency = limit
        progress.started = progress.clock()  # the ETA's clock: trials only, not Ray's start
        progress.show(force=True)
        by_key = {trial.key: trial for trial in trials}
        while pending or refs or branches.waiting:
            released = branches.poll()
            forks.update(released)
            pending = submission_order(pending + [by_key[key] for key in released])
            active = {trial.key for trial in pending} | {trial.key for trial in refs.values()}
            for key, why in branches.stranded(active).items():
                records.stranded(key, why)
            while pending and len(refs) < limit:
                trial = pending.pop(0)
                result.submitted[trial.key] = time.time()  # the driver's part starts here: config, tag, submit
                config = build_trial_config(spec, trial, result.token_cache, forks.get(trial.key))
                Path(config.output_dir).mkdir(parents=True, exist_ok=True)
                config.to_yaml(Path(config.output_dir, schema.TRIAL_CONFIG_FILE))
                tracker.client.set_tag(run_ids[trial.key], schema.TOKEN_CACHE_TAG, cache)
                request = TrialRequest(
                    key=trial.key,
                    run_id=run_ids[trial.key],
                    tracking_uri=spec.tracking_uri,
                    output_dir=output_dirs[trial.key],
                    threads=trial.threads,
                    trial_config=config,
                    gpus=trial.gpus,
                    gpus_per_node=trial.gpus_per_node,
                )
                ref = remote.options(**_task_options(trial, spec.resources.max_retries)).remote(request, trial_function)
                refs[ref] = trial
                progress.set(trial.key, schema.RUNNING)
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=poll_seconds) if refs else ([], [])
            for ref in ready:
                trial = refs.pop(ref)
                records.collect(trial, ref)
                branches.trial_ended(trial.key, result.statuses[trial.key])
            progress.show()
        tracker.finish_parent()
    except KeyboardInterrupt:
        # Ctrl-C: keep what finished, stop the workers, leave every unfinished run resumable.
        result.interrupted = True
        records.interrupt(refs)
        records.never_started([trial.key for trial in todo])
        tracker.finish_parent(interrupted=True)
        progress.close()
        stream.write(
            "\ninterrupted: unfinished trials keep their checkpoints; run the same launch "
            "command again to resume them\n"
        )
    except Exception:
        # Ray did not start, a resource check failed, the tokenizer stage failed...: the study
        # stays resumable; neither its parent run nor a run created for a trial may stay RUNNING.
        submitted = {trial.key for trial in refs.values()}
        records.never_started([trial.key for trial in todo if trial.key not in submitted])
        tracker.finish_parent(interrupted=True)
        raise
    finally:
        progress.close()
        if started_ray and ray.is_initialized():
            ray.shutdown()
    result.seconds = time.monotonic() - started
    return result


def progress_trials(trials: list[TrialSpec], output_dirs: dict[str, str]) -> list[ProgressTrial]:
    """What the progress display needs of each trial; trials of one depth and batch share a speed."""
    return [
        ProgressTrial(
            key=trial.key,
            flops=trial.flops_trained,
            steps=trial.steps,
            group=f"d{trial.depth}-batch{trial.batch_size}",
            directory=output_dirs[trial.key],
            batch_size=trial.batch_size,
        )
        for trial in trials
    ]


def submission_order(trials: list) -> list:
    """Costliest trials first (longest-processing-time order): started last, the biggest trial
    would run alone at the end while the other slots idle, minutes on a small box. Cost is what
    a trial runs (a branch: its cooldown only). Ties keep the study's order, so a relaunch
    submits in the same order."""
    return sorted(trials, key=lambda trial: trial.flops_trained, reverse=True)
