"""`run_trial`: one VAR trained for a compute budget on cached tokens, then measured.

Tiny CPU run (after `varscale tokenizer var_model/training/examples/tiny_tokenizer.yaml`):

    varscale train var_model/training/examples/tiny_trial.yaml

Each step (training/step.py): a batch of cached indices -> teacher-forcing input (no encoder
pass) -> logits -> cross-entropy over all tokens (uniform per token), in micro-batches whose
gradients add up to the full batch's -> AdamW step with clipped gradients. One process, DDP or
FSDP2 (training/parallel.py): the loop is the same.
At log points: train metrics; at evaluation points and at the end: test metrics; after both,
an atomic checkpoint. A NaN/inf (or too large: TrialConfig.divergence_limit, by default
2 ln V) train loss ends the trial with status "diverged": a result, not an exception, so a
study keeps going. A completed trial whose final test loss is above its cache's unigram
baseline is flagged (training/result.py), so that fits leave it out. The measurements at those
points are in training/measurements.py, the two endings in training/closing.py.

Cooldown branches (training/forks.py has the contract): a trunk writes a fork checkpoint
right after each fork step and stops at its last; a branch's fresh start is its fork's state
(training/branches.py), after which the loop is the same as for any trial.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from var_model.errors import CheckpointError, TrialError
from var_model.tokenizer.baseline import stored_unigram_baselines
from var_model.tokenizer.cache import TokenCache
from var_model.training.branches import ForkWriter, start_from_fork
from var_model.training.callbacks import CallbackList, JsonlCallback, TrialCallback
from var_model.training.checkpoint import (
    CHECKPOINT_FILE,
    PREVIOUS_CHECKPOINT_FILE,
    ReadableCheckpoint,
    fallback_note,
    readable_checkpoint_on_every_rank,
    save_checkpoint,
)
from var_model.training.closing import SAMPLES_FILE, finish_completed, finish_diverged
from var_model.training.config import TrialConfig
from var_model.training.config_comparison import RESUME_FREE_FIELDS, differing_fields
from var_model.training.distributed import DistributedContext
from var_model.training.measurements import evaluate_on_test_rows, sample_evaluator, sample_metrics, window_means
from var_model.training.optimizer import set_learning_rate
from var_model.training.result import RESULT_FILE, TrialResult
from var_model.training.setup import TrialParts, build_trial
from var_model.training.state import (
    Window,
    capture_state,
    new_window,
    restore_state,
    window_state,
)
from var_model.training.step import train_step

METRICS_FILE = "metrics.jsonl"


def run_trial(
    config: TrialConfig,
    callback: TrialCallback | None = None,
    resume: bool = True,
    context: DistributedContext | None = None,
) -> TrialResult:
    """Train and evaluate one trial; see docs/ARCHITECTURE.md, "Trial contract"."""
    if config.threads:
        torch.set_num_threads(config.threads)
    owns_context = context is None
    context = context or DistributedContext.from_environment(config.device)
    try:
        return _run(config, callback, resume, context)
    finally:
        if owns_context:
            context.shutdown()


def _run(config: TrialConfig, callback: TrialCallback | None, resume: bool, context: DistributedContext) -> TrialResult:
    output_dir = Path(config.output_dir)
    checkpoint_path = output_dir / CHECKPOINT_FILE
    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            for name in (CHECKPOINT_FILE, PREVIOUS_CHECKPOINT_FILE, RESULT_FILE, METRICS_FILE, SAMPLES_FILE):
                (output_dir / name).unlink(missing_ok=True)
    context.barrier()
    if resume:
        finished = TrialResult.load(output_dir)
        if finished is not None:
            if differing_fields(finished.info.get("trial_config", {}), config.to_dict(), RESUME_FREE_FIELDS):
                raise TrialError(
                    f"{output_dir} holds a finished trial with a different config; use another "
                    "output_dir, or resume=False to overwrite it"
                )
            return finished

    parts = build_trial(config, context)
    # before any training: a missing feature network or weights file fails now, not at the end
    evaluator = sample_evaluator(config, parts, context)
    callbacks = CallbackList([JsonlCallback(output_dir / METRICS_FILE), callback] if context.is_main else [])
    window = new_window(context.device)
    start_step = resumed_step = 0
    found = readable_checkpoint_on_every_rank(checkpoint_path, context) if resume else ReadableCheckpoint(None, None)
    if found.state is not None:
        start_step = resumed_step = _restore(parts, window, found, config, context)
    elif parts.plan.role == "branch":
        start_step = start_from_fork(parts, window, config, context)
    else:
        torch.manual_seed(config.seed + 1_000_003 * context.rank)  # same stream on a fresh start
    # the sample protocol is logged beside the sample metrics (params of the trial's run)
    start_info = {**parts.info, **(evaluator.protocol() if evaluator else {}), "resumed_step": resumed_step}
    if found.skipped:
        start_info["checkpoint_fallback"] = fallback_note(found, resumed_step, context)
    forks = ForkWriter(parts, config, context, callbacks)
    callbacks.on_start(start_info)
    forks.report_written()

    test_indices = parts.cache.indices("test")[: config.eval_images]
    test_labels = parts.cache.labels("test")[: config.eval_images]
    shard = context.shard(parts.batches.batch_size)
    started = time.perf_counter()
    last_checkpoint: str | None = str(found.path) if resumed_step else None
    divergence_limit = config.divergence_limit(parts.cache.codebook_size)
    if start_step == parts.steps:
        # the final checkpoint was written but the process died before result.json: the
        # weights are final, only the closing evaluation is repeated
        metrics = evaluate_on_test_rows(parts, test_indices, test_labels, config, context)
        metrics.update(sample_metrics(parts, evaluator, context, final=True))
        metrics.update(parts.cost.counters(start_step))
        return finish_completed(parts, config, context, callbacks, start_step, metrics, last_checkpoint)
    for step in range(start_step + 1, parts.steps + 1):
        lr = parts.schedule.lr(step - 1)
        set_learning_rate(parts.optimizer, lr)
        indices_BL, label_B = parts.batches.next_batch()
        indices_BL = indices_BL[shard].to(context.device, non_blocking=True)
        label_B = label_B[shard].to(context.device, non_blocking=True)
        loss, error = train_step(parts, indices_BL, label_B, config.grad_clip)
        window["loss"] += loss
        window["error"] += error
        window["steps"] += 1
        forks.after_step(step, window)

        final = step == parts.steps
        log_point = step % config.log_every == 0 or final
        checkpoint_point = final or bool(config.checkpoint_every and step % config.checkpoint_every == 0)
        metrics: dict[str, float] = {}
        if log_point or checkpoint_point:
            # never checkpoint a diverged state; a log point also closes the metric window
            train = window_means(window, context, reset=log_point)
            last_train_loss = train["train_loss"]
            if not math.isfinite(last_train_loss) or last_train_loss > divergence_limit:
                return finish_diverged(parts, config, context, callbacks, step, last_train_loss, last_checkpoint)
            if log_point:
                metrics.update(train)
        if final or (config.eval_every and step % config.eval_every == 0):
            metrics.update(evaluate_on_test_rows(parts, test_indices, test_labels, config, context))
            metrics.update(sample_metrics(parts, evaluator, context, final))
        if metrics:
            metrics.update(parts.cost.counters(step), lr=lr, elapsed_seconds=time.perf_counter() - started)
            callbacks.on_metrics(step, metrics)
        if checkpoint_point:
            last_checkpoint = _save(parts, window, checkpoint_path, config, context, step)
            callbacks.on_checkpoint(step, last_checkpoint)
        if final:
            return finish_completed(parts, config, context, callbacks, step, metrics, last_checkpoint)
    raise TrialError(
        f"checkpoint at step {start_step} is past the trial's {parts.steps} steps; "
        "was the budget lowered? use a new output_dir"
    )


def _save(
    parts: TrialParts, window: Window, path: Path, config: TrialConfig, context: DistributedContext, step: int
) -> str:
    # collective under FSDP (every rank takes part); the unsharded states land on rank 0
    state = capture_state(parts, window_state(window), config, context, step)
    if context.is_main:
        save_checkpoint(path, state)
    context.barrier()
    return str(path)


def _restore(
    parts: TrialParts, window: Window, found: ReadableCheckpoint, config: TrialConfig, context: DistributedContext
) -> int:
    state, path = found.state, found.path
    differing = differing_fields(state["trial_config"], config.to_dict(), RESUME_FREE_FIELDS)
    if differing:
        raise CheckpointError(
            f"checkpoint {path} was written by a trial with different {differing}; use another "
            "output_dir, or resume=False to start over"
        )
    if state.get("cache_key") != parts.cache.key:
        raise CheckpointError(f"checkpoint {path} was trained on another token cache ({state.get('cache_key')})")
    parts.schedule.check_matches(state["schedule"])
    return restore_state(parts, window, state, config, context)


def unigram_reference(config: TrialConfig) -> dict[str, float]:
    """The cache's frequency baselines, for comparing a trial's test loss (see
    var_model.tokenizer.baseline)."""
    return stored_unigram_baselines(TokenCache.open(config.token_cache, verify=False))


__all__ = ["run_trial", "unigram_reference"]
