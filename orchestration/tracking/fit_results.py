"""`varscale fit`'s results in MLflow: the files as artifacts under `fits/` of the study's parent
run (created if missing), the key numbers as metrics (`fit.<metric>.<N|C>.alpha` ...) and each
law's text as a tag. Tags, not params: MLflow refuses to re-log a param with a new value, and a
refit after more trials changes it."""

from __future__ import annotations

import math
import time

from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from analysis.loader import StudyFrame
from analysis.mlflow_schema import FIT_PREFIX, FITS_ARTIFACT_FOLDER, KIND_TAG, STUDY_KIND, STUDY_TAG
from analysis.report import file_label
from analysis.study_fits import StudyFits

LAW_NUMBERS = ("alpha", "beta", "r", "alpha_low", "alpha_high", "holdout_relative_error")


def log_fit_results(study: StudyFrame, fits: StudyFits, tracking_uri: str | None, files: list[str]) -> str:
    """Log the fit's files, numbers and laws to the study's parent run; returns its run id."""
    client = MlflowClient(tracking_uri)
    run_id = study.parent_run_id
    if run_id is None:
        run_id = client.create_run(
            study.experiment_id, run_name=study.study, tags={KIND_TAG: STUDY_KIND, STUDY_TAG: study.study}
        ).info.run_id
    for path in files:
        client.log_artifact(run_id, path, artifact_path=FITS_ARTIFACT_FOLDER)
    now, metrics, tags = int(time.time() * 1000), [], []
    for law in fits.laws:
        if law.fit is None:
            continue
        budget = f".{file_label(law.budget)}" if len(fits.budgets) > 1 and law.against == "N" else ""
        prefix = f"{FIT_PREFIX}.{law.metric}.{law.against}{budget}"
        row = law.row()
        for name in LAW_NUMBERS:
            if math.isfinite(row[name]):
                metrics.append(Metric(f"{prefix}.{name}", float(row[name]), now, 0))
        tags.append(RunTag(f"{prefix}.law", row["law"]))
    for metric, fit in fits.parametric.items():
        for name, value in fit.parameters().items():
            metrics.append(Metric(f"{FIT_PREFIX}.{metric}.ND.{name}", float(value), now, 0))
    client.log_batch(run_id, metrics=metrics, tags=tags)  # one transaction, not one call per number
    return run_id
