"""Which `TrialConfig` fields two runs that share state may disagree on.

A resume (checkpoint or finished result) and a branch (a trunk's fork) each compare the
config that wrote the state with the one that reads it; `differing_fields` names the fields
that differ outside the free ones, so the caller can refuse the state with that list.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from var_model.training.config import TrialConfig

# Fields that may differ between a checkpoint's config and the resuming one: they change
# where and how fast a trial runs, never what it computes. divergence_loss is a stop rule, not
# part of the update (a run below both limits computes the same), and trials written while its
# default was inf must still resume and count as finished.
RESUME_FREE_FIELDS = (
    "divergence_loss",
    "token_cache",
    "output_dir",
    "device",
    "threads",
    "eval_batch_size",
    "checkpoint_every",
    "sample_grid",
    "samples_per_class",
    "sample_cfg",
    "sample_top_k",
    "sample_top_p",
    "micro_batch_size",
    "activation_checkpointing",
    "sharding",
    "compile",
    "attention",
)
# Fields in which a branch may differ from the trunk that wrote its fork (besides the
# resume-free ones): its budget, its fork, and the shape of its cooldown, none of which the
# trunk's steps depend on (so one trunk can serve linear and sqrt cooldowns alike).
BRANCH_FREE_FIELDS = (
    "budget_value",
    "fork_budgets",
    "fork_path",
    "fork_sha256",
    "fork_step",
    "decay_shape",
    "final_lr_fraction",
)


def differing_fields(first: dict[str, Any], second: dict[str, Any], free: tuple[str, ...]) -> list[str]:
    """The config fields (of two `to_dict()`s) whose values differ, ignoring those in `free`.
    A field missing from one (a file written before the field existed) counts as its default."""
    first, second = {**_DEFAULTS_AS_WRITTEN, **first}, {**_DEFAULTS_AS_WRITTEN, **second}
    return sorted(key for key in set(first) | set(second) if key not in free and first.get(key) != second.get(key))


# the defaults as `to_dict` writes them (a tuple as a list)
_DEFAULTS_AS_WRITTEN = {
    item.name: list(item.default) if isinstance(item.default, tuple) else item.default
    for item in dataclasses.fields(TrialConfig)
    if item.default is not dataclasses.MISSING
}
