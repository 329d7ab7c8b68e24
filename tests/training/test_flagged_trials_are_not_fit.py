"""The contract between the trainer's end-of-trial flags and the fits: a diverged trial, or a
completed one flagged as ending above its cache's unigram baseline, is kept in the study's
table but is no point of a fit."""

from __future__ import annotations

import pandas as pd

from analysis.loader import StudyFrame
from analysis.mlflow_schema import FINAL_PREFIX
from var_model.training.result import ABOVE_BASELINE_METRIC


def test_diverged_and_flagged_trials_are_left_out_of_fits():
    column = ABOVE_BASELINE_METRIC.removeprefix(FINAL_PREFIX)  # how the loader names a final metric
    trials = pd.DataFrame(
        {
            "trial_key": ["learnt", "above-baseline", "diverged", "before-the-flag"],
            "status": ["completed", "completed", "diverged", "completed"],
            column: [0.0, 1.0, float("nan"), float("nan")],
        }
    )
    frame = StudyFrame(study="flags", trials=trials, curves=pd.DataFrame(columns=["trial_key"]))
    assert list(frame.fit_trials()["trial_key"]) == ["learnt", "before-the-flag"]
    assert len(frame.trials) == 4  # kept, only not fitted
