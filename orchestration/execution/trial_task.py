"""The body of one trial on a Ray worker: set threads, run the trainer, report to MLflow.

Kept free of Ray so it runs (and is tested) in any process; `execution.launcher` wraps it
in a Ray task. A worker killed mid-trial (kill -9, node loss) is resubmitted by Ray
(`max_retries`), and the trainer resumes from `output_dir/checkpoint.pt` into the same MLflow
run, because the run id travels in the request. A Python exception is not retried: it is a
bug or bad input and would fail again; a diverged trial is a result (status "diverged").
Every attempt is recorded on the run with its node, allocation, times and end
(tracking.attempts), and the run sums its GPU- and CPU-seconds over attempts.
"""

from __future__ import annotations

import os
import socket
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import torch

from analysis import mlflow_schema as schema
from analysis.mlflow_schema import redact_text
from orchestration.tracking.attempts import AttemptLog, allocated
from orchestration.tracking.clients import tracking_client
from orchestration.tracking.trial_callback import MlflowTrialCallback
from var_model.errors import DivergenceError, TrialError
from var_model.training import run_trial


@dataclass(frozen=True)
class TrialRequest:
    key: str
    run_id: str
    tracking_uri: str
    output_dir: str
    threads: int
    trial_config: Any  # var_model.training.TrialConfig
    gpus: float = 0.0
    # resources.gpus_per_node (None: the cluster's largest node), for a trial that spans nodes
    gpus_per_node: int | None = None


def execute_trial(request: TrialRequest, trial_function: Callable | None = None) -> dict:
    """Run one trial to its end; returns {key, status, metrics, steps, node, pid}."""
    torch.set_num_threads(request.threads)
    trial_function = trial_function or run_trial
    client = tracking_client(request.tracking_uri)
    run = client.get_run(request.run_id)
    attempt = int(run.data.tags.get(schema.ATTEMPTS_TAG, "0")) + 1
    client.update_run(request.run_id, status="RUNNING")
    client.set_tag(request.run_id, schema.STATUS_TAG, schema.RUNNING)
    client.set_tag(request.run_id, schema.ATTEMPTS_TAG, str(attempt))
    os.makedirs(request.output_dir, exist_ok=True)
    # Spend: this attempt's start, node and allocation now; its end and reason below. A previous
    # attempt whose worker was killed is closed first (tracking.attempts says how).
    attempts = AttemptLog(client, request.run_id)
    attempts.begin(
        node=socket.gethostname(),
        node_id=_ray_node_id(),
        pid=os.getpid(),
        cpus=allocated(run.data.params, "cpus"),
        gpus=float(request.gpus),
        output_dir=request.output_dir,
    )
    callback = MlflowTrialCallback(request.tracking_uri, request.run_id, request.output_dir)
    try:
        result = trial_function(request.trial_config, callback, resume=True)
    except DivergenceError as error:
        # The trainer returns a "diverged" result; should a divergence be raised instead, it is
        # still a result of the study, not a failure to retry.
        attempts.end(schema.DIVERGED)
        client.set_tag(request.run_id, schema.STATUS_TAG, schema.DIVERGED)
        client.set_tag(request.run_id, schema.MESSAGE_TAG, str(error)[: schema.TAG_VALUE_LIMIT])
        client.set_terminated(request.run_id, status="FINISHED")
        return {
            "key": request.key,
            "status": schema.DIVERGED,
            "metrics": {},
            "steps": 0,
            "node": socket.gethostname(),
            "pid": os.getpid(),
            "node_id": _ray_node_id(),
        }
    except Exception as error:
        # A tracking URI with credentials may be in the error (MLflow's REST errors name the
        # URL): never into the run, the worker's log or the driver's console.
        failure = redact_text(traceback.format_exc(), request.tracking_uri)
        attempts.end(
            f"{schema.ATTEMPT_FAILED}: {redact_text(f'{type(error).__name__}: {error}', request.tracking_uri)}"
        )
        client.set_tag(request.run_id, schema.STATUS_TAG, schema.FAILED)
        client.set_tag(request.run_id, schema.FAILURE_TAG, failure[-schema.FAILURE_TAIL_LIMIT :])
        client.set_terminated(request.run_id, status="FAILED")
        if failure != traceback.format_exc():
            raise TrialError(f"trial {request.key} failed: {failure[-schema.FAILURE_TAIL_LIMIT :]}") from None
        raise
    attempts.end(result.status)
    client.set_tag(request.run_id, schema.STATUS_TAG, result.status)
    client.set_terminated(request.run_id, status="FINISHED")
    return {
        "key": request.key,
        "status": result.status,
        "metrics": dict(result.metrics),
        "steps": result.steps,
        "node": socket.gethostname(),
        "pid": os.getpid(),
        "node_id": _ray_node_id(),
    }


def _ray_node_id() -> str:
    # Here, not at the top: torchrun ranks run this module too and never need Ray's import.
    import ray

    # Outside a Ray worker (tests, torchrun ranks) there is no node id; asking for the
    # runtime context there would start a Ray instance.
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
