"""How a trial ends: its `TrialResult` ("diverged" or "completed"), written to result.json by
rank 0 and passed to the callbacks' on_end, and a completed trial's sample grid.

A completed trial whose final test loss is not below its cache's unigram baseline is flagged
(training/result.py), so that fits leave it out; a diverged one is a result, not an
exception, so a study keeps going.
"""

from __future__ import annotations

from pathlib import Path

from var_model.tokenizer.baseline import stored_unigram_baselines
from var_model.training.callbacks import CallbackList
from var_model.training.config import TrialConfig
from var_model.training.config_choices import DIVERGENCE_MULTIPLE_OF_UNIFORM_LOSS
from var_model.training.distributed import DistributedContext
from var_model.training.parallel import gathered_weights
from var_model.training.result import TrialResult, with_baseline_flag
from var_model.training.sampling import sample_grid, save_png
from var_model.training.setup import TrialParts

SAMPLES_FILE = "samples.png"


def finish_diverged(
    parts: TrialParts,
    config: TrialConfig,
    context: DistributedContext,
    callbacks: CallbackList,
    step: int,
    train_loss: float,
    checkpoint: str | None,
) -> TrialResult:
    """End the trial "diverged" at `step`, whose train loss passed the divergence limit."""
    counters = parts.cost.counters(step)
    metrics = {"final_train_loss": train_loss, **{f"final_{key}": value for key, value in counters.items()}}
    callbacks.on_metrics(step, {"train_loss": train_loss, **counters})
    limit = config.divergence_limit(parts.cache.codebook_size)
    default = f"{DIVERGENCE_MULTIPLE_OF_UNIFORM_LOSS:g} ln V"
    source = "divergence_loss" if config.divergence_loss is not None else default
    message = (
        f"train loss {train_loss:.4g} at step {step} (limit {limit:.4g}: {source}, V = "
        f"{parts.cache.codebook_size} codes); "
        f"lr {parts.schedule.lr(step - 1):.3g}: lower base_lr or raise warmup_fraction"
    )
    result = TrialResult(
        "diverged", metrics, step, checkpoint, message, info={**parts.info, "trial_config": config.to_dict()}
    )
    return _finish(config, context, callbacks, result)


def finish_completed(
    parts: TrialParts,
    config: TrialConfig,
    context: DistributedContext,
    callbacks: CallbackList,
    step: int,
    metrics: dict[str, float],
    checkpoint: str | None,
) -> TrialResult:
    """End the trial "completed" with the last step's `metrics` as its final ones."""
    # a trunk's weights are a fork's, never a trained run of any budget: nobody looks at its grid
    # (the demo's 5 trunk grids cost 0.2-0.7 s each, measured in docs/STARTUP.md)
    if config.sample_grid and parts.plan.role != "trunk":
        with gathered_weights(parts.var):  # rank 0 alone samples: no collectives inside
            if context.is_main:
                labels = list(range(parts.cache.num_classes))
                grid = sample_grid(
                    parts.var,
                    labels,
                    config.samples_per_class,
                    config.sample_cfg,
                    config.sample_top_k,
                    config.sample_top_p,
                    seed=config.seed,
                )
                save_png(grid, Path(config.output_dir) / SAMPLES_FILE)
    final = {
        f"final_{key}": value
        for key, value in metrics.items()
        if key.startswith(("test_", "train_loss", "images", "tokens", "flops", "sample_"))
    }
    final, message = with_baseline_flag(final, stored_unigram_baselines(parts.cache)["unigram_test_loss_avg"])
    result = TrialResult(
        "completed", final, step, checkpoint, message, info={**parts.info, "trial_config": config.to_dict()}
    )
    return _finish(config, context, callbacks, result)


def _finish(
    config: TrialConfig, context: DistributedContext, callbacks: CallbackList, result: TrialResult
) -> TrialResult:
    if context.is_main:
        result.save(config.output_dir)
        callbacks.on_end(result)
    context.barrier()
    return result
