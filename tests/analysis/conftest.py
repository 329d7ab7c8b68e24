"""Fixtures for the analysis tests: the reference CSV and a small REAL MLflow study store.

The store is built once per test session by this (single) process with plain mlflow client calls
following docs/ARCHITECTURE.md's schema: creating one SQLite store from several processes at once
races in MLflow's schema migration, so it is never created concurrently.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

# The tests import this folder's helpers (synthetic_study, analysis_test_constants) by name,
# under any pytest import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_study import build_synthetic_study  # noqa: E402  (needs the path above)

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_CSV = REPO_ROOT / "tests" / "data" / "chinchilla_epoch_extracted.csv"  # see tests/data/README.md


@pytest.fixture(scope="session")
def reference_frame() -> pd.DataFrame:
    if not REFERENCE_CSV.exists():
        pytest.fail(f"reference data missing at {REFERENCE_CSV}; it ships with the repository")
    frame = pd.read_csv(REFERENCE_CSV)
    # The replication drops the 5 highest-loss points; tokens D = C / (6 N).
    frame = frame.sort_values("loss").iloc[:-5].reset_index(drop=True)
    frame["tokens"] = frame["Training FLOP"] / (6 * frame["Model Size"])
    return frame


@pytest.fixture(scope="session")
def synthetic_study(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("mlflow-store")
    return build_synthetic_study(f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri())
