"""What `varscale launch` returns: each trial's state, what the tasks returned, the failures."""

from __future__ import annotations

from dataclasses import dataclass, field

from analysis.text import counts_text

# States a LaunchResult gives trials that did not end in this launch; both resume on relaunch.
INTERRUPTED = "interrupted"  # running when Ctrl-C came: stopped, its checkpoint kept
NOT_STARTED = "not started"  # still queued when the launch stopped


@dataclass
class LaunchResult:
    # trial key -> completed / diverged / failed (or, after Ctrl-C, interrupted / not started);
    # a trial finished in an earlier launch keeps its recorded state and is listed in `skipped`
    statuses: dict[str, str] = field(default_factory=dict)
    results: dict[str, dict] = field(default_factory=dict)  # trial key -> what the task returned
    errors: dict[str, str] = field(default_factory=dict)  # trial key -> the cause, in one line
    skipped: list[str] = field(default_factory=list)
    # trial key -> when the driver submitted it and when it recorded its end (unix seconds): the
    # driver's share of a trial's time, with the run's attempt tags (benchmarks/scale_study.py)
    submitted: dict[str, float] = field(default_factory=dict)
    recorded: dict[str, float] = field(default_factory=dict)
    token_cache: str = ""
    ray_start_seconds: float = 0.0
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and not self.interrupted

    def summary(self, name: str) -> str:
        """'smoke: 3 completed, 1 failed (0 finished earlier) in 12.3 s'"""
        counts = counts_text(list(self.statuses.values())) or "no trials"
        stopped = "interrupted: " if self.interrupted else ""
        return f"{name}: {stopped}{counts} ({len(self.skipped)} finished earlier) in {self.seconds:.1f} s"
