"""Where a launched study's trials spend the time outside their training loops: per worker
process, each trial's start-up and closing, read back from the study's MLflow store.

    python benchmarks/startup.py runs/smoke/mlflow.db

Run it after a `varscale launch` (or `varscale demo`) of any study; it reads only the SQLite
store, so it also reads a store written by an older commit. Per trial (the `varscale.pid` tag
says which worker process ran it):

- start-up: from the end of the previous trial in the same worker (its run's end time) to the
  first step of this one; the first trial of a worker counts from its run's creation (the driver
  creates every run, after the tokenizer stage, just before it submits the trials), so it also
  holds the worker's imports. That is Ray's hand-over, the task's MLflow calls, building the model
  and optimizer, opening the token cache and a branch's fork.
- loop: the training loop (steps, evaluations, checkpoints), from the trial's own
  `elapsed_seconds` metric;
- closing: from the loop's last metric to the run's end (sample grid, final metrics, artifacts).

The loop's start is the first metric's timestamp minus its `elapsed_seconds` (the trainer's
clock starts after the build). A measurement, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
from collections import defaultdict

PID_TAG = "varscale.pid"  # analysis.mlflow_schema.PID_TAG, spelled here so an old store's schema needs no import
KIND_TAG = "varscale.kind"


def trial_timelines(database: str) -> list[dict]:
    """One dict per trial run: name, pid, created, loop_start, loop_end, end (ms since epoch)."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    runs = {
        run_id: {"name": name, "created": start, "end": end}
        for run_id, name, start, end in connection.execute("select run_uuid, name, start_time, end_time from runs")
    }
    tags = defaultdict(dict)
    for run_id, key, value in connection.execute("select run_uuid, key, value from tags"):
        tags[run_id][key] = value
    timelines = []
    for run_id, run in runs.items():
        if tags[run_id].get(KIND_TAG) != "trial" or PID_TAG not in tags[run_id] or run["end"] is None:
            continue
        rows = connection.execute(
            "select key, value, timestamp from metrics where run_uuid = ? order by timestamp", (run_id,)
        ).fetchall()
        # today's name and any prefixed one (train/elapsed_seconds): the clock of the loop
        elapsed = [(timestamp, value) for key, value, timestamp in rows if key.endswith("elapsed_seconds")]
        if not elapsed:
            continue
        first_timestamp, first_elapsed = elapsed[0]
        timelines.append(
            {
                **run,
                "pid": tags[run_id][PID_TAG],
                "loop_start": first_timestamp - first_elapsed * 1000,
                "loop_end": elapsed[-1][0],
            }
        )
    return timelines


def startup_report(timelines: list[dict]) -> str:
    by_worker = defaultdict(list)
    for timeline in timelines:
        by_worker[timeline["pid"]].append(timeline)
    lines = [f"{len(timelines)} trials in {len(by_worker)} worker processes"]
    firsts, later, closings = [], [], []
    for pid, trials in sorted(by_worker.items()):
        trials.sort(key=lambda timeline: timeline["loop_start"])
        previous_end = None
        for timeline in trials:
            since = timeline["created"] if previous_end is None else previous_end
            startup = (timeline["loop_start"] - since) / 1000
            closing = (timeline["end"] - timeline["loop_end"]) / 1000
            loop = (timeline["loop_end"] - timeline["loop_start"]) / 1000
            (firsts if previous_end is None else later).append(startup)
            closings.append(closing)
            first = " (first in its worker)" if previous_end is None else ""
            lines.append(
                f"  pid {pid} {timeline['name']:14s} start-up {startup:6.2f} s  loop {loop:7.2f} s  "
                f"closing {closing:5.2f} s{first}"
            )
            previous_end = timeline["end"]
    lines.append(_summary("start-up, a worker's first trial", firsts))
    lines.append(_summary("start-up, later trials (reused worker)", later))
    lines.append(_summary("closing", closings))
    return "\n".join(lines)


def _summary(label: str, values: list[float]) -> str:
    if not values:
        return f"{label}: none"
    return (
        f"{label}: n {len(values)}, median {statistics.median(values):.2f} s, "
        f"min {min(values):.2f} s, max {max(values):.2f} s, sum {sum(values):.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("database", help="the study's SQLite MLflow store, e.g. runs/smoke/mlflow.db")
    print(startup_report(trial_timelines(parser.parse_args().database)))


if __name__ == "__main__":
    main()
