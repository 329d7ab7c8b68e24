"""`varscale fit`'s results in MLflow: the files as artifacts under `fits/` of the study's parent
run (created if missing), the key numbers as metrics (`fit.<metric>.<N|C>.alpha` ...) and each
law's text as a tag, and the law table as the "Scaling laws" section of the run's description
(tracking.run_notes), next to the figures. Tags, not params: MLflow refuses to re-log a param
with a new value, and a refit after more trials changes it. A study with many budgets has more
law tags than one `log_batch` takes (100): tracking.batches splits them."""

from __future__ import annotations

import math
import time
from pathlib import Path

from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException

from analysis.loader import StudyFrame
from analysis.mlflow_schema import (
    FIT_PREFIX,
    FITS_ARTIFACT_FOLDER,
    KIND_TAG,
    NOTE_TAG,
    STUDY_KIND,
    STUDY_TAG,
    redact_text,
)
from analysis.report import file_label
from analysis.study_fits import StudyFits
from orchestration.tracking.batches import log_batch_in_chunks
from orchestration.tracking.clients import tracking_client
from orchestration.tracking.run_notes import LAWS_HEADING, laws_section, replace_section
from var_model.errors import VarScaleError


class TrackingWriteError(VarScaleError):
    """The MLflow store refused a write."""


FIGURE_EXTENSION = ".png"  # the figures the description names (SVG copies, with --svg, are not named)

LAW_NUMBERS = ("alpha", "beta", "r", "alpha_low", "alpha_high", "holdout_relative_error")


def log_fit_results(
    study: StudyFrame, fits: StudyFits, tracking_uri: str | None, files: list[str], law_table: str = ""
) -> str:
    """Log the fit's files, numbers and laws to the study's parent run; returns its run id.
    law_table: the printed table, for the run's description. A store that refuses the writes
    (read-only storage, a full disk) raises TrackingWriteError, one line."""
    try:
        return _log_fit_results(study, fits, tracking_uri, files, law_table)
    except (OSError, MlflowException) as error:
        reason = redact_text(str(error), tracking_uri).splitlines()[0] if str(error) else type(error).__name__
        raise TrackingWriteError(
            f"logging to MLflow failed ({type(error).__name__}: {reason}); make the study's store writable"
        ) from None


def _log_fit_results(study: StudyFrame, fits: StudyFits, tracking_uri: str | None, files: list[str], law_table: str):
    client = tracking_client(tracking_uri)
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
    note = client.get_run(run_id).data.tags.get(NOTE_TAG, "")
    figures = [Path(path).name for path in files if path.endswith(FIGURE_EXTENSION)]
    tags.append(RunTag(NOTE_TAG, replace_section(note, LAWS_HEADING, laws_section(law_table, figures))))
    # few transactions, not one call per number (and within MLflow's per-call limits)
    log_batch_in_chunks(client, run_id, metrics=metrics, tags=tags)
    return run_id
