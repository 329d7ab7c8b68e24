"""Refusals a launch makes before it trains anything: a study keeps its strategy and its cache.

Both guard the same thing: the points of one study's fits must be comparable. A trial key that
ran as an independent trial is not the branch now planned under that key; and a trial trained
on another token cache (a changed data set or tokenizer, or a corrupt tokenizer that made a new
cache: a probe trained 4 trials so beside results from the original cache, without a word)
measured another loss.
"""

from __future__ import annotations

from analysis import mlflow_schema as schema
from orchestration.study.spec import StudySpec
from orchestration.study.trials import TrialSpec
from var_model.errors import ConfigError

# The key of the tokenizer stage's result that names its cache's content (var_model's stage
# result's cache_key); the cache's path is the fallback for a stage function that gives none
# (caches are content-addressed: tokens-<hash>).
CACHE_IDENTITY_KEYS = ("cache_key",)


def cache_identity(stage: dict) -> str:
    """What identifies the token cache a tokenizer stage returned."""
    for key in CACHE_IDENTITY_KEYS:
        if stage.get(key):
            return str(stage[key])
    return str(stage["cache_path"])


def check_roles(spec: StudySpec, trials: list[TrialSpec], existing: dict) -> None:
    """A trial key that ran under another strategy (an independent run where a branch is now
    planned) must not be resumed or skipped as if it were this trial."""
    for trial in trials:
        run = existing.get(trial.key)
        recorded = run.data.tags.get(schema.ROLE_TAG, schema.INDEPENDENT_ROLE) if run is not None else trial.role
        if recorded != trial.role:
            raise ConfigError(
                f"budgets.strategy: trial {trial.key} of study {spec.name} ran as {recorded!r}, but "
                f"budgets.strategy {spec.budgets.strategy} makes it a {trial.role}; a study keeps its strategy: "
                "give the study another name (and storage) to change it"
            )


def check_token_cache(spec: StudySpec, existing: dict, identity: str) -> None:
    """Refuse a launch whose cache differs from the one earlier trials trained on: finished
    trials (points of the fits) and trials with a checkpoint (a resume would continue them on
    other tokens). Runs without the tag predate it and cannot be checked."""
    trained_elsewhere = {}
    for key, run in existing.items():
        recorded = run.data.tags.get(schema.TOKEN_CACHE_TAG)
        trained = (
            run.data.tags.get(schema.STATUS_TAG) in schema.FINISHED_STATUSES
            or schema.CHECKPOINT_STEP_TAG in run.data.tags
        )
        if recorded and recorded != identity and trained:
            trained_elsewhere.setdefault(recorded, []).append(key)
    if trained_elsewhere:
        recorded, keys = next(iter(trained_elsewhere.items()))
        shown = ", ".join(sorted(keys)[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        raise ConfigError(
            f"study {spec.name}: trials {shown} trained on token cache {recorded}, but this launch's "
            f"tokenizer stage gives {identity}; one study never mixes token caches: restore the data and "
            "tokenizer settings it ran with, or give the study another name and storage"
        )
