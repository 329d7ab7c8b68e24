"""The study layer: study files, Ray launch and MLflow tracking, and the `varscale` CLI.

Sub-packages, each depending only on those before it (tests/test_layers.py enforces the order):

- `study`: the spec (pydantic), loading (read -> override -> validate) and the plan: trials,
  trial configs, the tokenizer geometry, the dry-run table;
- `tracking`: MLflow on the driver (the study's runs), on the trial (the callback), and status;
- `execution`: the launcher, the Ray runtime, the trial task, torchrun, the tokenizer stage,
  the launch lock and the progress line;
- `commands` and `cli`: the command line.
"""
