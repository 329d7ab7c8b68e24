"""Scale benchmark (issue 14): a study of N fake trials through the launch on a local Ray.

    .venv/bin/python benchmarks/scale_study.py --trials 50      # a quick look first
    .venv/bin/python benchmarks/scale_study.py --trials 500     # the issue's size (~15-30 min here)

The trials are the tests' fake trial (tests/orchestration/fake_trial.py: the trial contract,
MLflow logging and checkpoints, no model), so what is measured is the driver and the store:

- driver CPU seconds per trial (user + system of this process over the launch / N): the goal
  is < 0.5 s;
- per trial, submission -> start (the driver takes the trial until its function runs on a
  worker: config, tags, Ray scheduling, the task's MLflow preamble) and end -> recorded (the
  function returned until the driver recorded it), median and 95th percentile;
- the driver's peak resident memory, the MLflow store's size (database and artifacts);
- a relaunch that skips everything, as a user runs it (`python -m orchestration.cli launch`,
  a new process): the goal is < 30 s.

The first launch runs in this process (`orchestration.execution.launcher.launch`, what
`varscale launch` calls) because the fake trial function cannot be named on the command line.
Numbers go to stdout as a table and, with --json, to a file; docs/SCALE.md keeps the results.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests" / "orchestration"
STUDY_FILE = TESTS / "fixtures" / "tiny_study.yaml"
DEPTHS, BUDGETS = [1, 2, 3, 4, 5], [16 + 8 * index for index in range(10)]  # 50 trials per seed
# A loaded 2-core box can take minutes to start Ray's processes; Ray's defaults give up sooner.
os.environ.setdefault("RAY_raylet_start_wait_time_s", "60")
os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")
sys.path[:0] = [str(ROOT), str(TESTS)]

import fake_trial  # noqa: E402  (from the tests folder, on the path just above)


class TimedTrial:
    """The fake trial, writing when its function was called and when it returned."""

    def __call__(self, config, callback=None, resume: bool = True):
        called = time.time()
        result = fake_trial.fake_run_trial(config, callback, resume)
        Path(config.output_dir, "bench_times.json").write_text(json.dumps({"called": called, "returned": time.time()}))
        return result


def overrides(trials: int, storage: str) -> list[str]:
    if trials % (len(DEPTHS) * len(BUDGETS)):
        raise SystemExit(f"--trials {trials}: give a multiple of {len(DEPTHS) * len(BUDGETS)}")
    seeds = trials // (len(DEPTHS) * len(BUDGETS))
    return [
        f"name=scale_{trials}",
        f"storage={storage}",
        f"model.depths=[{','.join(map(str, DEPTHS))}]",  # no spaces: the flags can be pasted into a shell
        f"budgets.values=[{','.join(map(str, BUDGETS))}]",
        f"seeds=[{','.join(map(str, range(seeds)))}]",
        "trial.sample_grid=false",
    ]


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file()) if path.exists() else 0


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"median {statistics.median(ordered):.3f} s, p95 {p95:.3f} s, max {ordered[-1]:.3f} s"


def start_ray_patiently(attempts: int = 10) -> float:
    """Ray's raylet exits when its agents take over 15 s to start (hard-coded in Ray 2.60; a
    loaded 2-core box gets there): try again, since the benchmark measures the launch, not Ray."""
    import ray

    from orchestration.execution.ray_runtime import RayStartError, start_ray

    for attempt in range(1, attempts + 1):
        try:
            return start_ray()
        except RayStartError as error:
            print(f"Ray start {attempt}/{attempts} failed: {str(error).splitlines()[0][:200]}", file=sys.stderr)
            if ray.is_initialized():
                ray.shutdown()
            if attempt == attempts:
                raise
            time.sleep(10)
    raise AssertionError("unreachable")


def with_ray(spec, max_concurrent: int | None, storage: Path) -> dict:
    """The launch as `varscale launch` runs it, on a local Ray this benchmark starts."""
    import ray
    from ray import cloudpickle

    from orchestration.execution.launcher import launch

    cloudpickle.register_pickle_by_value(fake_trial)  # Ray workers cannot import the tests folder
    ray_seconds = start_ray_patiently()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    with open(storage.parent / f"{storage.name}.launch.log", "w") as log:
        result = launch(
            spec,
            max_concurrent=max_concurrent,
            stream=log,
            trial_function=TimedTrial(),
            tokenizer_function=fake_trial.fake_tokenizer_stage,
        )
    wall = time.monotonic() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    ray.shutdown()  # the Ray this benchmark started
    driver_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    to_start, to_recorded = [], []
    submitted, recorded = getattr(result, "submitted", {}), getattr(result, "recorded", {})  # older launchers lack them
    for key in result.statuses:
        times_file = Path(spec.storage, "trials", key, "bench_times.json")
        if key in submitted and times_file.exists():
            times = json.loads(times_file.read_text())
            to_start.append(times["called"] - submitted[key])
            to_recorded.append(recorded[key] - times["returned"])
    trials = len(result.statuses)
    return {
        "statuses": {state: list(result.statuses.values()).count(state) for state in set(result.statuses.values())},
        "launch_seconds": wall,
        "ray_start_seconds": ray_seconds,
        "seconds_per_trial": wall / max(trials, 1),
        "driver_cpu_seconds_per_trial": driver_cpu / max(trials, 1),
        "submission_to_start": percentiles(to_start),
        "end_to_recorded": percentiles(to_recorded),
    }


def without_ray(spec) -> dict:
    """The launch's per-trial driver work (create the run, write the config, tag the cache) and
    each trial's own (the task body, execution.trial_task, with the fake trial), in this process
    and in turn: for a box where Ray cannot start (its raylet exits when its agents take over
    15 s to start, which a 2-core box shared by 8 jobs reaches). The relaunch after it is real."""
    from analysis import mlflow_schema as schema
    from orchestration.execution.trial_task import TrialRequest, execute_trial
    from orchestration.study.trial_config import build_trial_config, plan_study, trial_output_dir
    from orchestration.tracking.study_runs import StudyTracker, git_revision

    trials = plan_study(spec)
    tracker = StudyTracker(spec)
    tracker.start_parent()
    cache = fake_trial.fake_tokenizer_stage(spec)["cache_path"]
    revision = git_revision()
    driver, trial_seconds = [], []
    for trial in trials:
        started = time.perf_counter()
        run_id = tracker.create_trial_run(trial, revision)
        config = build_trial_config(spec, trial, cache)
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        config.to_yaml(Path(config.output_dir, schema.TRIAL_CONFIG_FILE))
        tracker.client.set_tag(run_id, schema.TOKEN_CACHE_TAG, cache)
        submitted = time.perf_counter()
        request = TrialRequest(trial.key, run_id, spec.tracking_uri, trial_output_dir(spec, trial), 1, config)
        execute_trial(request, fake_trial.fake_run_trial)
        driver.append(submitted - started)
        trial_seconds.append(time.perf_counter() - submitted)
    tracker.finish_parent()
    return {
        "driver_seconds_per_trial (create run, config, tag)": percentiles(driver),
        "trial_task_seconds (fake trial, in process)": percentiles(trial_seconds),
        "launch_seconds": sum(driver) + sum(trial_seconds),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--storage", default=None, help="default: /tmp/varscale_scale_<trials> (must not exist)")
    parser.add_argument("--max-concurrent", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    parser.add_argument("--without-ray", action="store_true", help="run the trials in this process, in turn")
    args = parser.parse_args()
    storage = Path(args.storage or f"/tmp/varscale_scale_{args.trials}")
    if storage.exists():
        raise SystemExit(f"--storage {storage} exists; give a new folder (the benchmark measures a fresh store)")

    from orchestration.study.loading import load_study

    settings = overrides(args.trials, str(storage))
    spec = load_study(str(STUDY_FILE), settings)
    memory_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    numbers = {"trials": args.trials, "driver_memory_before_launch_mib": memory_before}
    numbers.update(without_ray(spec) if args.without_ray else with_ray(spec, args.max_concurrent, storage))

    relaunch_started = time.monotonic()
    flags = [part for setting in settings for part in ("--set", setting)]
    relaunch = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "launch", str(STUDY_FILE), *flags],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    relaunch_seconds = time.monotonic() - relaunch_started
    numbers.update(
        {
            "driver_peak_memory_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "mlflow_database_mib": sum(size_of(path) for path in storage.glob("mlflow.db*")) / 2**20,
            "mlflow_artifacts_mib": size_of(storage / "mlartifacts") / 2**20,
            "relaunch_seconds": relaunch_seconds,
            "relaunch_exit_code": relaunch.returncode,
            "relaunch_output": relaunch.stdout.strip().splitlines()[-2:] + relaunch.stderr.strip().splitlines()[-3:],
        }
    )
    for name, value in numbers.items():
        print(f"{name:34s} {value:.3f}" if isinstance(value, float) else f"{name:34s} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2))
    return 0 if relaunch.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
