"""One trial: a VAR trained for a compute budget on cached tokens, then measured.

    from var_model.training import TrialConfig, run_trial, JsonlCallback
    result = run_trial(TrialConfig.from_yaml("var_model/training/examples/tiny_trial.yaml"))
    result.status, result.metrics["final_test_loss_avg"]

The contract with the orchestration layer is in docs/ARCHITECTURE.md ("Trial contract").
"""

from var_model.training.callbacks import CallbackList, JsonlCallback, TrialCallback, read_metrics
from var_model.training.config import TrialConfig
from var_model.training.distributed import DistributedContext
from var_model.training.result import TrialResult
from var_model.training.trainer import run_trial, unigram_reference

__all__ = [
    "CallbackList",
    "DistributedContext",
    "JsonlCallback",
    "TrialCallback",
    "TrialConfig",
    "TrialResult",
    "read_metrics",
    "run_trial",
    "unigram_reference",
]
