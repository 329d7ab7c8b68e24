"""The live progress of `varscale launch`: states, each running trial's step, loss and speed, an ETA.

Each running trial's callback rewrites `<output_dir>/progress.json` at every train log
(analysis.mlflow_schema.PROGRESS_FILE: step, steps, train_loss, images_per_second, time); a
missing or half-written file means no data yet.

Why the ETA comes from measured rates and not from FLOPs: tiny trials are bound by overhead
(worker start, imports, cache open, the final evaluation), so time is not proportional to
FLOPs; the demo showed `ETA 1m02s` with 4.6 minutes left. Here each trial's seconds per step are
measured from its own progress file, trials of one group (same depth and batch) share a speed,
a finished trial's time beyond its steps is the per-trial overhead, and the ETA is the end of a
simulated schedule: the pending trials, costliest first (the launch's order), each placed on the
slot that frees first.

In a terminal the display is a live multi-line table (rich); in a log file or pipe it is one
line per change: the state line when a count changes, a trial's line at most every
`trial_line_seconds`.
"""

from __future__ import annotations

import heapq
import math
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from analysis.mlflow_schema import COMPLETED, DIVERGED, FAILED, PENDING, RUNNING
from analysis.text import clock_duration
from orchestration.execution.trial_progress import ProgressTrial, TrialProgress, read_progress

# Trial states as the state line counts them (an unknown state counts as pending).
BUCKETS = {COMPLETED: "done", DIVERGED: "done", RUNNING: "running", FAILED: "failed", PENDING: "pending"}
ENDED = (COMPLETED, DIVERGED, FAILED)
MOST_ROWS = 30  # running trials shown in a terminal; a cluster may run hundreds at once
# Slots busy at least this share of the recent window: the slots, not the driver, are the limit.
# (A reused worker takes 0.2-0.4 s between trials, about 1% of a demo trial.)
BUSY_SLOTS = 0.9


@dataclass(frozen=True)
class _Rates:
    measured: dict[str, float]  # trial key -> its seconds per FLOP
    groups: dict[str, float]  # group -> the median of its trials'
    overall: float | None  # the median of all measured trials'
    overhead: float  # seconds per trial beyond its steps


def _speed(images_per_second: float) -> str:
    # the callback writes NaN until it has two logs to measure between
    return f"{images_per_second:.1f}" if math.isfinite(images_per_second) else "?"


class Progress:
    def __init__(
        self,
        name: str,
        trials: list[ProgressTrial],
        stream: TextIO | None = None,
        concurrency: int = 1,
        clock: Callable[[], float] = time.time,
        trial_line_seconds: float = 30.0,
    ):
        self.name = name
        self.trials = {trial.key: trial for trial in trials}
        self.stream = stream or sys.stdout
        self.concurrency = max(1, concurrency)
        self.clock = clock
        self.trial_line_seconds = trial_line_seconds
        self.started = clock()
        self.state = {key: PENDING for key in self.trials}
        self.skipped: set[str] = set()
        self.began: dict[str, float] = {}  # key -> when it started running (driver clock)
        self.ended: dict[str, float] = {}
        self.first_wave: set[str] = set()  # trials started before any ended: they paid the worker starts
        self.first: dict[str, TrialProgress] = {}  # each trial's first and latest progress
        self.latest: dict[str, TrialProgress] = {}
        self.seen_at: dict[str, float] = {}  # when the latest progress was read (driver clock)
        self._last_line = ""
        self._trial_lines: dict[str, tuple[float, int]] = {}  # key -> (when, step) of its last line
        self._live: Live | None = None
        self._rates_cache: _Rates | None = None

    # --- states ------------------------------------------------------------------------------
    def set(self, key: str, state: str) -> None:
        self._rates_cache = None
        now = self.clock()
        if state == RUNNING:
            self.began.setdefault(key, now)
            if not self.ended:
                self.first_wave.add(key)
        elif state in ENDED and key in self.began:
            self._read(key, now)
            self.ended[key] = now
        self.state[key] = state

    def skip(self, key: str, state: str) -> None:
        """A trial finished in an earlier launch: counted as done, never in a rate."""
        self.state[key] = state
        self.skipped.add(key)

    def counts(self) -> dict[str, int]:
        counts = {"done": 0, "running": 0, "failed": 0, "pending": 0}
        for state in self.state.values():
            counts[BUCKETS.get(state, "pending")] += 1
        return counts

    def poll(self) -> None:
        now = self.clock()
        for key, state in self.state.items():
            if state == RUNNING:
                self._read(key, now)

    def _read(self, key: str, now: float) -> None:
        progress = read_progress(self.trials[key].directory)
        if progress is None or (key in self.latest and progress.step <= self.latest[key].step):
            return
        self._rates_cache = None
        self.first.setdefault(key, progress)
        self.latest[key] = progress
        self.seen_at[key] = now

    # --- rates -------------------------------------------------------------------------------
    def step_seconds(self, key: str) -> float | None:
        """Seconds per step, between the trial's first and latest progress (its own clock)."""
        first, latest = self.first.get(key), self.latest.get(key)
        if first is None:
            return None
        if latest.step > first.step:
            return max(latest.time - first.time, 0.0) / (latest.step - first.step)
        # One read so far (short trials often give no more): the callback's measured images/s
        speed, batch = latest.images_per_second, self.trials[key].batch_size
        return batch / speed if batch > 0 and math.isfinite(speed) and speed > 0 else None

    def _seconds_per_flop(self, key: str) -> float | None:
        trial = self.trials[key]
        step_seconds = self.step_seconds(key)
        if step_seconds is not None and trial.flops > 0:
            return step_seconds * trial.steps / trial.flops
        if key in self.ended and trial.flops > 0:  # no progress file: its whole time, overhead in
            return (self.ended[key] - self.began[key]) / trial.flops
        return None

    def overhead_seconds(self) -> float:
        """A trial's time beyond its steps (start, evaluation, samples), from finished trials."""
        return self._rates().overhead

    def _rates(self) -> _Rates:
        # Computed once per change of state or progress, not per trial asked about: the ETA asks
        # for every pending trial, and a 500-trial study would make that quadratic per redraw.
        if self._rates_cache is None:
            # The first wave of trials also pays each slot's worker start (imports: a minute on a
            # loaded box), which later trials, on the same workers, do not: once a later trial
            # has finished, only later trials give the overhead, the most recent ones first.
            later = [key for key in self.ended if key not in self.first_wave]
            overheads = []
            for key in sorted(later or self.ended, key=self.ended.get)[-2 * self.concurrency :]:
                step_seconds = self.step_seconds(key)
                if step_seconds is not None:
                    overheads.append(self.ended[key] - self.began[key] - step_seconds * self.trials[key].steps)
            measured = {key: rate for key in self.began if (rate := self._seconds_per_flop(key)) is not None}
            groups: dict[str, list[float]] = {}
            for key, rate in measured.items():
                groups.setdefault(self.trials[key].group, []).append(rate)
            self._rates_cache = _Rates(
                measured=measured,
                groups={group: statistics.median(rates) for group, rates in groups.items()},
                overall=statistics.median(measured.values()) if measured else None,
                overhead=max(statistics.median(overheads), 0.0) if overheads else 0.0,
            )
        return self._rates_cache

    def _rate_for(self, key: str) -> float | None:
        """Seconds per FLOP of a trial: its own, else its group's, else any measured trial's."""
        rates = self._rates()
        if key in rates.measured:
            return rates.measured[key]
        return rates.groups.get(self.trials[key].group, rates.overall)

    def remaining_seconds(self, key: str) -> float | None:
        """What is left of a running trial, or the whole of a pending one."""
        trial, now = self.trials[key], self.clock()
        step_seconds = self.step_seconds(key)
        if step_seconds is not None:
            left = (trial.steps - self.latest[key].step) * step_seconds - (now - self.seen_at[key])
            return max(left, 0.0)
        rate = self._rate_for(key)
        if rate is None:
            return None
        whole = self.overhead_seconds() + rate * trial.flops
        return max(whole - (now - self.began[key]), 0.0) if key in self.began else whole

    def eta_seconds(self) -> float | None:
        running = [key for key, state in self.state.items() if state == RUNNING]
        pending = [key for key, state in self.state.items() if BUCKETS.get(state, "pending") == "pending"]
        slots = [self.remaining_seconds(key) for key in running]
        slots += [0.0] * max(self.concurrency - len(slots), 0)
        if any(slot is None for slot in slots):
            return None
        heapq.heapify(slots)
        for key in sorted(pending, key=lambda key: self.trials[key].flops, reverse=True):
            duration = self.remaining_seconds(key)
            if duration is None:
                return None
            heapq.heappush(slots, heapq.heappop(slots) + duration)  # on the slot that frees first
        schedule = max(slots, default=0.0)
        # The schedule assumes the slots are the limit. When the driver or the store is (hundreds
        # of short trials: a 500-trial benchmark ended 1.4 trials/s with 3 of 4 slots busy), the
        # recent rate of ends says more; the ETA is the later of the two. That rate counts trials,
        # not their cost, so it applies only when slots stood idle: with every slot busy and the
        # costliest trials first, the first ends are the slowest (the demo's ETA jumped to 6m43s
        # with 1m20s left when its two trunks ended).
        throughput = self._recent_seconds_per_end()
        if throughput is None or self._recent_busy_fraction() >= BUSY_SLOTS:
            return schedule
        return max(schedule, throughput * (len(pending) + len(running)))

    def _recent_busy_fraction(self) -> float:
        """The share of the slots' time that trials ran, over the window of the recent ends."""
        ends = sorted(self.ended.values())[-(2 * self.concurrency + 1) :]
        start, stop = ends[0], self.clock()
        if stop <= start:
            return 1.0
        busy = sum(
            max(0.0, min(self.ended.get(key, stop), stop) - max(began, start)) for key, began in self.began.items()
        )
        return busy / (self.concurrency * (stop - start))

    def _recent_seconds_per_end(self) -> float | None:
        """Seconds between trial ends, over the last 2 x concurrency ends of this launch."""
        ends = sorted(self.ended.values())[-(2 * self.concurrency + 1) :]
        if len(ends) <= self.concurrency:
            return None  # too few ends yet: the first wave ends together, by construction
        return (ends[-1] - ends[0]) / (len(ends) - 1)

    # --- display -----------------------------------------------------------------------------
    def line(self) -> str:
        counts = self.counts()
        eta = self.eta_seconds()
        return (
            f"[{self.name}] done {counts['done']}/{len(self.state)}  running {counts['running']}  "
            f"failed {counts['failed']}  pending {counts['pending']}  "
            f"elapsed {clock_duration(self.clock() - self.started)}  "
            f"ETA {clock_duration(eta) if eta is not None else '?'}"
        )

    def trial_line(self, key: str) -> str:
        progress, left = self.latest.get(key), self.remaining_seconds(key)
        left_text = clock_duration(left) if left is not None else "?"
        if progress is None:
            return f"  {key}  starting  left {left_text}"
        return (
            f"  {key}  step {progress.step}/{progress.steps}  train loss {progress.train_loss:.4f}  "
            f"{_speed(progress.images_per_second)} images/s  left {left_text}"
        )

    def _table(self) -> Group:
        table = Table(box=None, pad_edge=False, show_edge=False)
        for column in ("trial", "step", "train loss", "images/s", "left"):
            table.add_column(column, justify="left" if column == "trial" else "right")
        running = [key for key, state in self.state.items() if state == RUNNING]
        for key in running[:MOST_ROWS]:
            progress, left = self.latest.get(key), self.remaining_seconds(key)
            table.add_row(
                key,
                f"{progress.step}/{progress.steps}" if progress else "starting",
                f"{progress.train_loss:.4f}" if progress else "",
                _speed(progress.images_per_second) if progress else "",
                clock_duration(left) if left is not None else "?",
            )
        more = [Text(f"  ... and {len(running) - MOST_ROWS} more running")] if len(running) > MOST_ROWS else []
        return Group(Text(self.line()), table, *more)

    def show(self, force: bool = False) -> None:
        self.poll()
        if self.stream.isatty():
            if self._live is None:
                console = Console(file=self.stream, force_terminal=True)
                self._live = Live(console=console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False)
                self._live.start()
            self._live.update(self._table(), refresh=True)
            return
        line = self.line()
        if force or line.split("  elapsed")[0] != self._last_line.split("  elapsed")[0]:
            self._write(line)  # not a terminal (CI, log files): one line per change, no redraw
        self._last_line = line
        now = self.clock()
        for key, progress in self.latest.items():
            when, step = self._trial_lines.get(key, (float("-inf"), -1))
            if self.state[key] == RUNNING and progress.step != step and now - when >= self.trial_line_seconds:
                self._write(self.trial_line(key))
                self._trial_lines[key] = (now, progress.step)

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._live is not None:
            self._live.update(self._table(), refresh=True)
            self._live.stop()
            self._live = None
