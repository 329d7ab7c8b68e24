"""TrialSpec (what the study decided) -> var_model.training.TrialConfig (what the trainer runs),
and the study's plan: every trial, its execution fitted to its GPUs, each checked by building
its TrialConfig.

Each trial's files live in `<storage>/trials/<trial key>/` (checkpoint.pt, metrics.jsonl,
samples.png, trial_config.yaml): a path on storage every node shares, so a trial retried on
another node resumes from the same checkpoint. A trunk's forks are in its folder's forks/
(var_model.training.forks); a branch's TrialConfig names the fork it starts from.
"""

from __future__ import annotations

import os

from orchestration.study.branches import BRANCH, TRUNK
from orchestration.study.data_section import data_root_problem
from orchestration.study.execution_plan import trial_device
from orchestration.study.spec import StudySpec
from orchestration.study.trials import TrialSpec, expand
from var_model.errors import ConfigError
from var_model.training.config import TrialConfig
from var_model.training.config_choices import SHA256_HEX_DIGITS
from var_model.training.forks import Fork, fork_file

TRIALS_FOLDER = "trials"
TOKEN_CACHE_FOLDER = "token_cache"


def trial_output_dir(spec: StudySpec, trial: TrialSpec) -> str:
    return os.path.join(spec.storage, TRIALS_FOLDER, trial.key)


def token_cache_dir(spec: StudySpec) -> str:
    return os.path.join(spec.storage, TOKEN_CACHE_FOLDER)


def trunk_output_dir(spec: StudySpec, trial: TrialSpec) -> str:
    """The folder of the trunk of a trunk or branch trial (where the trunk writes its forks)."""
    return os.path.join(spec.storage, TRIALS_FOLDER, trial.branching.trunk_key)


def planned_fork(spec: StudySpec, trial: TrialSpec) -> Fork:
    """A branch's fork as it will be written (its hash unknown until then): for checking the
    branch's TrialConfig before its trunk has run."""
    branching = trial.branching
    path = fork_file(trunk_output_dir(spec, trial), branching.fork_step)
    return Fork(branching.fork_step, trial.budget_value, str(path), "0" * SHA256_HEX_DIGITS)


def _role_values(trial: TrialSpec, fork: Fork | None) -> dict:
    # a trunk's and branch's fields; every trial of a trunk shares its warm-up in steps
    if trial.role == TRUNK:
        return {"fork_budgets": list(trial.branching.fork_budgets), "warmup_steps": trial.warmup_steps}
    if trial.role == BRANCH:
        assert fork is not None and fork.step == trial.branching.fork_step, f"{trial.key} needs its own fork"
        return {
            "fork_path": fork.path,
            "fork_sha256": fork.sha256,
            "fork_step": fork.step,
            "warmup_steps": trial.warmup_steps,
        }
    return {}


def build_trial_config(
    spec: StudySpec, trial: TrialSpec, token_cache: str | None = None, fork: Fork | None = None
) -> TrialConfig:
    """The trial's TrialConfig; a branch's names `fork` (default: its planned fork, for checks)."""
    if trial.role == BRANCH and fork is None:
        fork = planned_fork(spec, trial)
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
        # the recipe as written, with its execution `auto`s replaced by the plan's choice, and
        # a trunk's or branch's fields (its warm-up in steps among them)
        **{**spec.recipe.trial_values(trial.depth), **trial.execution.trial_values(), **_role_values(trial, fork)},
        # the sample-quality protocol, the same for every trial (None: no sample evaluation)
        evaluation=spec.evaluation.trial_values() if spec.evaluation else None,
        **spec.trial,
    )
    try:
        return TrialConfig.from_dict(values)
    except ConfigError as error:
        raise ConfigError(f"trial (the TrialConfig of {trial.key}): {error}") from None


def plan_study(spec: StudySpec, for_launch: bool = True) -> list[TrialSpec]:
    """Every trial of the study, in launch order, after checking every per-trial number (the
    width/heads split, zero-step budgets, the memory plan of each GPU trial, each TrialConfig)
    before anything runs. `for_launch=False` (dry-run) plans a study whose data is not there
    yet: an image folder without data.root, which a launch refuses."""
    problem = data_root_problem(spec.data)
    if problem and for_launch:
        raise ConfigError(problem)
    trials = expand(spec)
    for trial in trials:
        build_trial_config(spec, trial)
    return trials
