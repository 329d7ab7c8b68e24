"""A trial's state after a step, as a checkpoint holds it, and putting it back.

Both kinds of checkpoint hold this state: a trial's own `checkpoint.pt` (resume) and a
trunk's fork files (training/forks.py), so a branch starting from a fork continues exactly
as the trunk's run would have, and as a resumed run does. The state is the model, the
optimizer (and fp16 scaler), the schedule, the data position, the RNG streams and the open
train-metric window: all a run's future depends on.

Each rank has its own RNG streams (class dropout and drop-path draw per rank) and its own
metric window (summed over ranks only at log points), so the state holds every rank's, in
rank order (`ranks`), and a resume with the same number of processes gives each rank its own
back: bit for bit the uninterrupted run. Every rank reads the whole global batch and takes its
rows, so the data position is one for all. A resume under another number of processes (or of a
file without `ranks`) gives rank 0 the saved rank 0's streams and the others fresh distinct
ones, and every rank the mean of the saved windows, so the next log point's mean is exact.
"""

from __future__ import annotations

from typing import Any

import torch

from var_model.training.checkpoint import capture_rng_state, restore_rng_state
from var_model.training.config import TrialConfig
from var_model.training.distributed import DistributedContext
from var_model.training.parallel import (
    full_state_dicts,
    is_positional,
    load_full_state_dicts,
    named_optimizer_state,
)
from var_model.training.setup import TrialParts

# The train-metric window: sums of the per-step train loss and error since the last log
# point (device tensors, synced only at log points) and the steps they cover.
Window = dict[str, Any]


def new_window(device: torch.device) -> Window:
    return {
        "loss": torch.zeros((), dtype=torch.float64, device=device),
        "error": torch.zeros((), dtype=torch.float64, device=device),
        "steps": 0,
    }


def window_state(window: Window, reset: bool = False) -> dict[str, Any]:
    """The window as plain numbers; `reset` gives the empty window a log point leaves."""
    if reset:
        return {"loss": 0.0, "error": 0.0, "steps": 0}
    return {"loss": window["loss"].item(), "error": window["error"].item(), "steps": window["steps"]}


def capture_state(
    parts: TrialParts, window: dict[str, Any], config: TrialConfig, context: DistributedContext, step: int
) -> dict[str, Any] | None:
    """The state after `step` steps, with `window` as `window_state` gives it. Collective
    under FSDP (every rank calls it); the dict on rank 0, None on the others."""
    model_state, optimizer_state = full_state_dicts(parts.var, parts.optimizer)
    ranks = context.gather_to_main({"rng": capture_rng_state(context.device), "window": window})
    if not context.is_main:
        return None
    return {
        "step": step,
        "model": model_state,
        "optimizer": optimizer_state,
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
        "schedule": parts.schedule.state_dict(),
        "rng": ranks[0]["rng"],  # rank 0's, where readers of files without `ranks` look
        "data_position": parts.batches.position.state_dict(),
        "window": window,
        "ranks": ranks,
        "trial_config": config.to_dict(),
        "cache_key": parts.cache.key,
    }


def restore_state(
    parts: TrialParts, window: Window, state: dict[str, Any], config: TrialConfig, context: DistributedContext
) -> int:
    """Put a checked state back into `parts` and `window`; returns its step."""
    optimizer_state = state["optimizer"]
    if is_positional(optimizer_state):  # written before FSDP support: parameters by position
        optimizer_state = named_optimizer_state(parts.var, parts.optimizer, optimizer_state)
    load_full_state_dicts(parts.var, parts.optimizer, state["model"], optimizer_state)
    if parts.scaler is not None and state["scaler"] is not None:
        parts.scaler.load_state_dict(state["scaler"])
    parts.batches.load_state_dict(state["data_position"])
    ranks = state.get("ranks")
    if ranks is not None and len(ranks) == context.world_size:
        restore_rng_state(ranks[context.rank]["rng"], context.device)
        saved_window = ranks[context.rank]["window"]
    else:
        if context.is_main:
            restore_rng_state(state["rng"], context.device)
        else:
            # no saved streams of this rank: a fresh, distinct stream per rank and step
            torch.manual_seed(config.seed + 1_000_003 * context.rank + int(state["step"]))
        saved_window = _mean_window([rank["window"] for rank in ranks]) if ranks else state["window"]
    window["loss"].fill_(saved_window["loss"])
    window["error"].fill_(saved_window["error"])
    window["steps"] = int(saved_window["steps"])
    return int(state["step"])


def _mean_window(windows: list[dict[str, Any]]) -> dict[str, Any]:
    # every rank took the same steps: with each new rank holding the old ranks' mean sum, the
    # next log point's all-reduced sum over (new world size x steps) is the old global mean
    count = len(windows)
    return {
        "loss": sum(window["loss"] for window in windows) / count,
        "error": sum(window["error"] for window in windows) / count,
        "steps": windows[0]["steps"],
    }
