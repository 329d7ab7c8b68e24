"""What the trainer measures at its log and evaluation points: the train window's means, the
test rows' losses, and the sample-quality metrics of `TrialConfig.evaluation`.

Each of these is a collective (or gathers the weights first, under FSDP), so every rank calls
it at the same step; rank 0 alone samples.
"""

from __future__ import annotations

from typing import Any

import torch

from var_model.evaluation import EvaluationConfig, SampleEvaluator
from var_model.training.config import TrialConfig
from var_model.training.distributed import DistributedContext
from var_model.training.evaluation import evaluate
from var_model.training.parallel import gathered_weights
from var_model.training.setup import TrialParts


def evaluate_on_test_rows(
    parts: TrialParts, test_indices, test_labels, config: TrialConfig, context: DistributedContext
) -> dict[str, float]:
    """test_* metrics of the current weights on the trial's test rows."""
    # ranks score uneven row shares (so run different numbers of forwards): under FSDP the
    # weights are gathered first, so that those forwards need no collectives
    with gathered_weights(parts.var):
        return evaluate(
            parts.var, parts.vqvae, test_indices, test_labels, config.eval_batch_size, context, parts.autocast_dtype
        )


def sample_evaluator(config: TrialConfig, parts: TrialParts, context: DistributedContext) -> SampleEvaluator | None:
    """The trial's sample-quality evaluator, built before any training so that a missing
    feature network or weights file fails at the start, not at the end; None when off."""
    if config.evaluation is None or parts.plan.role == "trunk":
        return None  # a trunk is never a point of a fit: its branches are (training/forks.py)
    return SampleEvaluator.for_trial(EvaluationConfig.from_dict(config.evaluation), parts.cache, context.device)


def sample_metrics(
    parts: TrialParts, evaluator: SampleEvaluator | None, context: DistributedContext, final: bool
) -> dict[str, float]:
    """sample_* metrics at the end, and at evaluation points when the protocol asks."""
    if evaluator is None or not (final or evaluator.config.at_evaluation_points):
        return {}
    with gathered_weights(parts.var):  # every rank gathers (FSDP); rank 0 alone samples, no collectives inside
        return evaluator.evaluate(parts.var) if context.is_main else {}


def window_means(window: dict[str, Any], context: DistributedContext, reset: bool) -> dict[str, float]:
    """Mean train loss and error since the last log point (averaged over ranks); `reset`
    starts a new window. The .tolist() is a device sync: once per log point, not per step."""
    sums = torch.stack([window["loss"], window["error"]])
    context.all_reduce_sum(sums)
    steps = window["steps"] * context.world_size
    if reset:
        window["loss"].zero_()
        window["error"].zero_()
        window["steps"] = 0
    loss, error = (sums / max(steps, 1)).tolist()
    return {"train_loss": loss, "train_error": error}
