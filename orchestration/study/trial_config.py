"""TrialSpec (what the study decided) -> var_model.training.TrialConfig (what the trainer runs),
and the study's plan: every trial, its execution fitted to its GPUs, each checked by building
its TrialConfig.

Each trial's files live in `<storage>/trials/<trial key>/` (checkpoint.pt, metrics.jsonl,
samples.png, trial_config.yaml): a path on storage every node shares, so a trial retried on
another node resumes from the same checkpoint.
"""

from __future__ import annotations

import os

from orchestration.study.execution_plan import trial_device
from orchestration.study.spec import StudySpec
from orchestration.study.trials import TrialSpec, expand
from var_model.errors import ConfigError
from var_model.training.config import TrialConfig

TRIALS_FOLDER = "trials"
TOKEN_CACHE_FOLDER = "token_cache"


def trial_output_dir(spec: StudySpec, trial: TrialSpec) -> str:
    return os.path.join(spec.storage, TRIALS_FOLDER, trial.key)


def token_cache_dir(spec: StudySpec) -> str:
    return os.path.join(spec.storage, TOKEN_CACHE_FOLDER)


def build_trial_config(spec: StudySpec, trial: TrialSpec, token_cache: str | None = None) -> TrialConfig:
    model = {"depth": trial.depth, "width": trial.width, "num_heads": trial.heads, **spec.model.overrides}
    values = dict(
        token_cache=token_cache or token_cache_dir(spec),
        output_dir=trial_output_dir(spec, trial),
        model=model,
        budget_kind=trial.budget_kind,
        budget_value=trial.budget_value,
        seed=trial.seed,
        device=trial_device(spec, trial.gpus),
        threads=trial.threads,
        # the recipe as written, with its execution `auto`s replaced by the plan's choice
        **{**spec.recipe.trial_values(trial.depth), **trial.execution.trial_values()},
        **spec.trial,
    )
    try:
        return TrialConfig.from_dict(values)
    except ConfigError as error:
        raise ConfigError(f"trial (the TrialConfig of {trial.key}): {error}") from None


def plan_study(spec: StudySpec) -> list[TrialSpec]:
    """Every trial of the study, in launch order, after checking every per-trial number (the
    width/heads split, zero-step budgets, the memory plan of each GPU trial, each TrialConfig)
    before anything runs."""
    trials = expand(spec)
    for trial in trials:
        build_trial_config(spec, trial)
    return trials
