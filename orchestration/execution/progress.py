"""The live progress line of `varscale launch`: done / running / failed / pending, elapsed, ETA.

The ETA weights trials by their FLOPs: elapsed x (FLOPs left / FLOPs done), running trials
counted half done. Counting trials instead would be wrong by 100x in a study whose trials
span d6 to d30.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from analysis.mlflow_schema import COMPLETED, DIVERGED, FAILED, PENDING, RUNNING
from analysis.text import clock_duration

# Trial states as the progress line counts them.
BUCKETS = {COMPLETED: "done", DIVERGED: "done", RUNNING: "running", FAILED: "failed", PENDING: "pending"}


class Progress:
    def __init__(self, name: str, flops_by_key: dict[str, float], stream: TextIO | None = None):
        self.name = name
        self.flops_by_key = flops_by_key
        self.stream = stream or sys.stdout
        self.started = time.monotonic()
        self.state = {key: PENDING for key in flops_by_key}
        self.skipped_flops = 0.0
        self._last_line = ""

    def set(self, key: str, state: str) -> None:
        self.state[key] = state

    def skip(self, key: str, state: str) -> None:
        """A trial finished in an earlier launch: counted as done, not in the ETA's rate."""
        self.state[key] = state
        self.skipped_flops += self.flops_by_key[key]

    def counts(self) -> dict[str, int]:
        counts = {"done": 0, "running": 0, "failed": 0, "pending": 0}
        for state in self.state.values():
            counts[BUCKETS.get(state, "pending")] += 1
        return counts

    def eta_seconds(self) -> float | None:
        # Running trials count as half done: without that, the first trial to finish (the
        # smallest) would set the rate alone and the ETA would start off by 10x.
        flops = {"done": 0.0, "running": 0.0, "pending": 0.0}
        for key, state in self.state.items():
            bucket = BUCKETS.get(state)
            if bucket in flops:
                flops[bucket] += self.flops_by_key[key]
        done = flops["done"] - self.skipped_flops + 0.5 * flops["running"]
        left = flops["pending"] + 0.5 * flops["running"]
        if done <= 0 or time.monotonic() - self.started < 1.0:
            return None
        return (time.monotonic() - self.started) * left / done

    def line(self) -> str:
        counts = self.counts()
        eta = self.eta_seconds()
        return (
            f"[{self.name}] done {counts['done']}/{len(self.state)}  running {counts['running']}  "
            f"failed {counts['failed']}  pending {counts['pending']}  "
            f"elapsed {clock_duration(time.monotonic() - self.started)}  "
            f"ETA {clock_duration(eta) if eta is not None else '?'}"
        )

    def show(self, force: bool = False) -> None:
        line = self.line()
        if self.stream.isatty():
            self.stream.write("\r" + line.ljust(len(self._last_line)))
            self.stream.flush()
        elif force or line.split("  elapsed")[0] != self._last_line.split("  elapsed")[0]:
            # Not a terminal (CI, log files): one line per change instead of a redraw.
            self.stream.write(line + "\n")
            self.stream.flush()
        self._last_line = line

    def close(self) -> None:
        if self.stream.isatty():
            self.stream.write("\n")
            self.stream.flush()
