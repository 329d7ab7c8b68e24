"""`log_batch` in pieces MLflow accepts: at most 100 tags (and 100 params) and 1,000 entries in
all per call (mlflow.utils.validation; a larger batch is refused with INVALID_PARAMETER_VALUE).
A fit of a study with more than ~24 budgets logs more law tags than that."""

from __future__ import annotations

from mlflow.utils.validation import MAX_ENTITIES_PER_BATCH, MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH


def log_batch_in_chunks(client, run_id: str, metrics=(), params=(), tags=()) -> int:
    """Log everything in as few calls as the limits allow; returns the number of calls."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    calls = 0
    while metrics or params or tags or calls == 0:
        chunk_params, params = params[:MAX_PARAMS_TAGS_PER_BATCH], params[MAX_PARAMS_TAGS_PER_BATCH:]
        chunk_tags, tags = tags[:MAX_PARAMS_TAGS_PER_BATCH], tags[MAX_PARAMS_TAGS_PER_BATCH:]
        room = min(MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH - len(chunk_params) - len(chunk_tags))
        chunk_metrics, metrics = metrics[:room], metrics[room:]
        client.log_batch(run_id, metrics=chunk_metrics, params=chunk_params, tags=chunk_tags)
        calls += 1
    return calls
