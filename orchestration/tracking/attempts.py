"""A trial's attempts and its spend: one tag per attempt on the trial's run, and the sums.

Each attempt (the first run, a retry after a worker died, a relaunch) writes the tag
`varscale.attempt.<n>` when it starts (start, node, node_id, pid, cpus, gpus) and again when it
ends (end, reason). An attempt whose worker was killed cannot write its end: the next attempt
closes it when it starts, at its last sign of life (the last `progress.json`, else its start:
the spend is then a lower bound), with the reason "worker died"; the driver closes it when it
sees the failure (StudyTracker.mark). After each close the run's metrics `spend/gpu_seconds_total`
and `spend/cpu_seconds_total` are the sums over closed attempts of duration x allocated GPUs
(CPU cores).

Tags, not an artifact: `varscale status` reads them with the runs it already searched, with no
download per trial, and each is small (MLflow takes 8,000 characters per tag).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from mlflow.entities import Metric, RunTag

from analysis import mlflow_schema as schema


def attempt_records(tags: dict[str, str]) -> list[dict]:
    """The run's attempts, in order (a tag that is not JSON is skipped: it is not ours)."""
    records = []
    for key, value in tags.items():
        number = key.removeprefix(schema.ATTEMPT_TAG_PREFIX)
        if key.startswith(schema.ATTEMPT_TAG_PREFIX) and number.isdigit():
            try:
                records.append(json.loads(value))
            except ValueError:
                continue
    return sorted(records, key=lambda record: int(record.get("attempt", 0)))


def seconds_of(record: dict) -> float:
    if record.get("end") is None:
        return 0.0
    return max(0.0, float(record["end"]) - float(record["start"]))


def spend_totals(records: list[dict]) -> dict[str, float]:
    """{gpu_seconds_total, cpu_seconds_total} over the closed attempts."""
    return {
        schema.GPU_SECONDS: sum(seconds_of(record) * float(record.get("gpus", 0)) for record in records),
        schema.CPU_SECONDS: sum(seconds_of(record) * float(record.get("cpus", 0)) for record in records),
    }


def last_sign_of_life(record: dict, output_dir: str | None) -> float:
    """When an attempt that never wrote its end was last known alive (unix seconds)."""
    latest = float(record["start"])
    if output_dir:
        try:
            progress = json.loads(Path(output_dir, schema.PROGRESS_FILE).read_text())
            latest = max(latest, float(progress.get("time") or 0.0))
        except (OSError, ValueError, AttributeError):
            pass  # no progress written yet (or torn by a crash): the start is all we know
    return latest


class AttemptLog:
    """The attempts of one trial's run, written through an MLflow client."""

    def __init__(self, client, run_id: str):
        self.client = client
        self.run_id = run_id
        self.records = attempt_records(client.get_run(run_id).data.tags)
        self.current: dict | None = None

    def _write(self, records: list[dict]) -> None:
        tags = [RunTag(f"{schema.ATTEMPT_TAG_PREFIX}{record['attempt']}", json.dumps(record)) for record in records]
        totals = spend_totals(self.records)
        now, step = int(time.time() * 1000), len(self.records)
        metrics = [Metric(schema.logged_metric_name(name), value, now, step) for name, value in totals.items()]
        self.client.log_batch(self.run_id, metrics=metrics, tags=tags)

    def close_open(self, reason: str, output_dir: str | None = None, end: float | None = None) -> list[dict]:
        """Close attempts left open by a killed worker; returns those closed."""
        closed = []
        for record in self.records:
            if record.get("end") is None and record is not self.current:
                record["end"] = end if end is not None else last_sign_of_life(record, output_dir)
                record["reason"] = reason
                closed.append(record)
        if closed:
            self._write(closed)
        return closed

    def begin(self, node: str, node_id: str, pid: int, cpus: float, gpus: float, output_dir: str) -> dict:
        self.close_open(schema.ATTEMPT_WORKER_DIED, output_dir)
        number = max((int(record.get("attempt", 0)) for record in self.records), default=0) + 1
        self.current = {
            "attempt": number,
            "start": time.time(),
            "end": None,
            "node": node,
            "node_id": node_id,
            "pid": pid,
            "cpus": cpus,
            "gpus": gpus,
            "reason": None,
        }
        self.records.append(self.current)
        self._write([self.current])
        return self.current

    def end(self, reason: str) -> None:
        assert self.current is not None, "begin() first"
        self.current["end"] = time.time()
        self.current["reason"] = reason[: schema.TAG_VALUE_LIMIT // 2]
        self._write([self.current])
        self.current = None


def allocated(params: dict[str, str], name: str) -> float:
    """A run's `cpus` or `gpus` param as a number (0 when missing or not a number)."""
    try:
        value = float(params.get(name, 0))
    except ValueError:
        return 0.0
    return value if math.isfinite(value) else 0.0
