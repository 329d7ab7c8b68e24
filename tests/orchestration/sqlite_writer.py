"""A writer process for test_tracking: imports only mlflow, so spawning four stays cheap."""

import time

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient


def write_metrics(tracking_uri: str, run_id: str, batches: int, queue) -> None:
    # The same call MlflowTrialCallback.on_metrics makes: one log_batch per event.
    client = MlflowClient(tracking_uri)
    started = time.perf_counter()
    try:
        for step in range(1, batches + 1):
            now = int(time.time() * 1000)
            values = {"train_loss": 1.0 / step, "lr": 1e-3, "images": 8.0 * step}
            client.log_batch(run_id, metrics=[Metric(key, value, now, step) for key, value in values.items()])
        queue.put(("ok", (time.perf_counter() - started) / batches))
    except Exception as error:  # reported to the test, which fails with the message
        queue.put(("error", f"{type(error).__name__}: {error}"))
