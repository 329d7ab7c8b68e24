"""MLflow for a study: the driver's runs, the trial-side callback, and the status read-back.
Every name it writes comes from `analysis.mlflow_schema`, which the reader shares."""
