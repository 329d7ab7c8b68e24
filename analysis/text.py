"""Plain-text presentation shared by the command line and the reports: aligned tables and
durations. It imports nothing, so every layer above analysis can use it cheaply."""

from __future__ import annotations

from collections.abc import Sequence


def text_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    right_aligned: Sequence[bool] | None = None,
    rule: bool = False,
) -> list[str]:
    """Columns padded to their widest cell, two spaces apart; `rule` adds a dashed line under the
    header. Cells are strings already: each caller decides how its numbers read."""
    aligned = list(right_aligned) if right_aligned is not None else [False] * len(header)
    widths = [max(len(header[column]), *(len(row[column]) for row in rows)) for column in range(len(header))]
    lines = []
    for row in [list(header), *rows]:
        lines.append(
            "  ".join(
                cell.rjust(width) if right else cell.ljust(width)
                for cell, width, right in zip(row, widths, aligned, strict=True)
            )
        )
    if rule:
        lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def short_duration(seconds: float) -> str:
    """A duration in its largest sensible unit: '45s', '12.5m', '3.2h' (estimates)."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def clock_duration(seconds: float) -> str:
    """A duration as a clock: '3m07s', '1h02m03s' (elapsed time and ETAs that tick)."""
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def counts_text(states: Sequence[str]) -> str:
    """'2 completed, 1 failed': how many of each state, sorted by state."""
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
