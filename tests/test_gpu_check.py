"""The prepared GPU check cannot rot: its CPU smoke mode runs the same code path end to end
(plan, eager and compiled steps, the report) at a size a CPU runs in about a minute."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_mode_writes_a_report_with_every_variant(tmp_path):
    report = tmp_path / "GPU_RESULTS.md"
    completed = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--smoke", "--out", str(report)],
        capture_output=True,
        text=True,
        timeout=540,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    text = report.read_text()
    assert "CPU smoke mode" in text
    rows = [line for line in text.splitlines() if line.startswith("| d1 |")]
    assert [row.split("|")[2].strip() for row in rows] == [
        "eager SDPA",
        "compiled SDPA",
        "compiled scalewise",
        "compiled flex",
    ]
    measured = [row for row in rows if "not run" not in row]
    assert len(measured) == 3  # all but flex, which has no CPU backward in this torch
    for row in measured:
        images_per_second = float(row.split("|")[5])
        assert images_per_second > 0
        assert row.split("|")[9].strip().endswith("GB")  # the plan, with its unit


def test_gpu_check_refuses_the_full_check_without_a_gpu(tmp_path):
    completed = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--out", str(tmp_path / "x.md")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
    )
    assert completed.returncode == 2 and "--smoke" in completed.stderr
    assert not (tmp_path / "x.md").exists()
