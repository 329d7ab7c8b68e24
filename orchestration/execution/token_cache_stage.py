"""The driver's side of the tokenizer stage: run it once as a Ray task, log what it reports.

The stage itself (train or load the VQVAE, build the token cache) is execution.tokenizer_task;
here it gets its resources (a GPU when the study asks for GPUs and the cluster has one; the
largest CPU share a node gives, up to 4), its report goes to the parent run, and a cache whose
class count differs from the study's model is refused before any trial is created.
"""

from __future__ import annotations

import json
import time
from typing import Callable, TextIO

import ray

from analysis import mlflow_schema as schema
from orchestration.execution.ray_runtime import node_resources
from orchestration.execution.tokenizer_task import run_tokenizer_stage
from orchestration.study.spec import StudySpec
from orchestration.tracking.study_runs import StudyTracker
from var_model.errors import ConfigError


def build_token_cache(
    spec: StudySpec, tracker: StudyTracker, tokenizer_function: Callable | None, stream: TextIO
) -> dict:
    """Build (or reuse) the study's token cache once, in a Ray task, on the shared storage."""
    function = tokenizer_function or run_tokenizer_stage
    wants_gpu = any(amount for _, amount in spec.resources.gpus.steps)
    gpus = 1 if wants_gpu and ray.cluster_resources().get("GPU", 0) >= 1 else 0
    # The largest CPU share any node can give, up to 4: tokenising is the stage's bulk work.
    cpus = min(4.0, max(node.get("CPU", 0.0) for node in node_resources()))
    started = time.monotonic()
    stage = ray.get(
        ray.remote(function).options(num_cpus=cpus, num_gpus=gpus, max_retries=1, name="tokenizer stage").remote(spec)
    )
    reused = "reused" if stage.get("reused_cache") else "built"
    stream.write(f"token cache {reused} in {time.monotonic() - started:.1f} s: {stage['cache_path']}\n")
    tracker.log_parent_artifact_text(json.dumps(stage, indent=2, default=str), schema.TOKENIZER_STAGE_FILE)
    numbers = {
        f"{schema.TOKENIZER_METRIC_PREFIX}{name}": value
        for name, value in {**stage.get("report", {}), **stage.get("baselines", {})}.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    tracker.log_parent_metrics(numbers)
    cache_classes = stage.get("num_classes")
    if cache_classes is not None and int(cache_classes) != spec.model.num_classes:
        # The trainer builds the VAR with the cache's classes, while the dry-run and the params
        # logged to MLflow (params_total: N in every fit) use model.num_classes.
        raise ConfigError(
            f"model.num_classes: {spec.model.num_classes}, but the token cache has {cache_classes} classes "
            f"(from the data); set model.num_classes: {cache_classes} so that logged model sizes are right"
        )
    return stage
