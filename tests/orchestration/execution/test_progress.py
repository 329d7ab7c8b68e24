"""The progress line counts states and weights the ETA by FLOPs."""

import io
import time

from orchestration.execution.progress import Progress


def test_counts_and_flops_weighted_eta():
    progress = Progress("study", {"small": 1.0, "big": 9.0, "old": 5.0}, io.StringIO())
    progress.skip("old", "completed")
    progress.started = time.monotonic() - 10.0
    progress.set("small", "completed")
    progress.set("big", "running")
    assert progress.counts() == {"done": 2, "running": 1, "failed": 0, "pending": 0}
    # done: 1 + 9/2 = 5.5 FLOPs in 10 s; left: 9/2 = 4.5 -> about 8.2 s
    assert abs(progress.eta_seconds() - 10.0 * 4.5 / 5.5) < 0.1
    progress.set("big", "failed")
    assert progress.counts()["failed"] == 1 and progress.eta_seconds() == 0.0
    progress.show()
    assert progress.stream.getvalue().startswith("[study] done 2/3  running 0  failed 1  pending 0")
