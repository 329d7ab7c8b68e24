"""Addresses in the MLflow UI (3.17) that open a study where its runs are.

MLflow 3.x opens an experiment in its GenAI view (traces, latency, no runs) unless the URL says
`workflowType=machine_learning` or the experiment is tagged as custom model development; the
study's experiment is tagged too (tracking.study_runs), the URL parameter covers a UI whose
stored preference is GenAI. The forms were read from the UI's routes in the installed package
(`/experiments/:experimentId/runs`, the `workflowType` and `compareRunsMode` query parameters)
and checked in a browser (docs/ui/).
"""

from __future__ import annotations

from urllib.parse import urlencode

from analysis.mlflow_schema import redact_uri

WORKFLOW_PARAMETER, MACHINE_LEARNING_WORKFLOW = "workflowType", "machine_learning"
# compareRunsMode: the runs page's table (the default) or its chart view.
TABLE_VIEW, CHART_VIEW = "TABLE", "CHART"


def _base(server_url: str) -> str:
    # never print a password: the UI's address is shown in consoles and logs
    return redact_uri(server_url).rstrip("/")


def runs_view_url(server_url: str, experiment_id: str, view: str = TABLE_VIEW) -> str:
    """The study's runs (table or charts): 'http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning'"""
    if view not in (TABLE_VIEW, CHART_VIEW):
        raise ValueError(f"view is {view!r}; use {TABLE_VIEW!r} or {CHART_VIEW!r}")
    query = {WORKFLOW_PARAMETER: MACHINE_LEARNING_WORKFLOW}
    if view == CHART_VIEW:
        query["compareRunsMode"] = CHART_VIEW
    # the UI routes in the URL's fragment (a hash router): the query belongs after the route
    return f"{_base(server_url)}/#/experiments/{experiment_id}/runs?{urlencode(query)}"


def run_url(server_url: str, experiment_id: str, run_id: str) -> str:
    """One run's page (the parent run: the study's description, its fits and figures)."""
    query = urlencode({WORKFLOW_PARAMETER: MACHINE_LEARNING_WORKFLOW})
    return f"{_base(server_url)}/#/experiments/{experiment_id}/runs/{run_id}?{query}"
