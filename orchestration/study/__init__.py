"""A study: its spec, how a file becomes one, and its plan of trials (no Ray, no MLflow)."""
