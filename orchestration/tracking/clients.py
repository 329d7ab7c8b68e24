"""The one way this project opens an MLflow client: with MLflow's run-URL printing turned off.

MLflow 3.17's REST client prints "View run <name> at: <tracking URI>/#/experiments/..." at every
`set_terminated` (mlflow/tracking/_tracking_service/client.py, `_log_url`), with the tracking URI
as given: `http://user:secret@host` puts the password on the launch's console and in every Ray
worker's log. MLflow's only switch for it is an environment variable, read at each call, so it
is set here, in the process that opens the client (the driver and every trial worker); the
printed URLs were never the ones to use anyway (`varscale ui` prints the runs view).
"""

from __future__ import annotations

import os

from mlflow.tracking import MlflowClient

SUPPRESS_RUN_URL_VARIABLE = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


def tracking_client(tracking_uri: str | None) -> MlflowClient:
    os.environ[SUPPRESS_RUN_URL_VARIABLE] = "true"
    return MlflowClient(tracking_uri)
