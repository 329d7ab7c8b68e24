"""MLflow tracking: no credentials leak, and concurrent trial processes writing to one
driver-created SQLite store lose no metric and never see 'database is locked'."""

import multiprocessing

from mlflow.tracking import MlflowClient
from sqlite_writer import write_metrics

from analysis.mlflow_schema import redact_uri
from orchestration.tracking.study_runs import ensure_store

WRITERS, BATCHES, KEYS = 4, 30, ("train_loss", "lr", "images")


def test_redact_uri_strips_credentials():
    assert redact_uri("https://alice:s3cret@mlflow.example.org:5443/path") == "https://mlflow.example.org:5443/path"
    assert redact_uri("http://token@host:5000") == "http://host:5000"
    assert redact_uri("sqlite:////tmp/x/mlflow.db") == "sqlite:////tmp/x/mlflow.db"


def test_concurrent_writers_lose_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ensure_store(uri, str(tmp_path))  # the driver creates the store first (creation race)
    client = MlflowClient(uri)
    experiment = client.create_experiment("concurrency", artifact_location=(tmp_path / "artifacts").as_uri())
    run_ids = [client.create_run(experiment).info.run_id for _ in range(WRITERS)]
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=write_metrics, args=(uri, run_id, BATCHES, queue)) for run_id in run_ids]
    for process in processes:
        process.start()
    outcomes = [queue.get(timeout=180) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    errors = [detail for kind, detail in outcomes if kind == "error"]
    assert not errors, errors
    for run_id in run_ids:
        for key in KEYS:
            steps = sorted(metric.step for metric in client.get_metric_history(run_id, key))
            assert steps == list(range(1, BATCHES + 1)), (run_id, key)
    seconds = [detail for _, detail in outcomes]
    print(f"\n{WRITERS} concurrent SQLite writers: {1000 * sum(seconds) / len(seconds):.1f} ms per log_batch")
