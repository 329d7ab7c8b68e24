"""The body of one trial on a Ray worker: set threads, run the trainer, report to MLflow.

Kept free of Ray so it runs (and is tested) in any process; `execution.launcher` wraps it
in a Ray task. A worker killed mid-trial (kill -9, node loss) is resubmitted by Ray
(`max_retries`), and the trainer resumes from `output_dir/checkpoint.pt` into the same MLflow
run, because the run id travels in the request. A Python exception is not retried: it is a
bug or bad input and would fail again; a diverged trial is a result (status "diverged").
"""

from __future__ import annotations

import os
import socket
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import torch
from mlflow.tracking import MlflowClient

from analysis import mlflow_schema as schema
from orchestration.tracking.trial_callback import MlflowTrialCallback
from var_model.errors import DivergenceError
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


def execute_trial(request: TrialRequest, trial_function: Callable | None = None) -> dict:
    """Run one trial to its end; returns {key, status, metrics, steps, node, pid}."""
    torch.set_num_threads(request.threads)
    trial_function = trial_function or run_trial
    client = MlflowClient(request.tracking_uri)
    run = client.get_run(request.run_id)
    attempt = int(run.data.tags.get(schema.ATTEMPTS_TAG, "0")) + 1
    client.update_run(request.run_id, status="RUNNING")
    client.set_tag(request.run_id, schema.STATUS_TAG, schema.RUNNING)
    client.set_tag(request.run_id, schema.ATTEMPTS_TAG, str(attempt))
    os.makedirs(request.output_dir, exist_ok=True)
    callback = MlflowTrialCallback(request.tracking_uri, request.run_id, request.output_dir)
    try:
        result = trial_function(request.trial_config, callback, resume=True)
    except DivergenceError as error:
        # The trainer returns a "diverged" result; should a divergence be raised instead, it is
        # still a result of the study, not a failure to retry.
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
    except Exception:
        client.set_tag(request.run_id, schema.STATUS_TAG, schema.FAILED)
        client.set_tag(request.run_id, schema.FAILURE_TAG, traceback.format_exc()[-schema.FAILURE_TAIL_LIMIT :])
        client.set_terminated(request.run_id, status="FAILED")
        raise
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
