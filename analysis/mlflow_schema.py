"""The MLflow schema of a study: every tag, param, metric and artifact name that the writer
(orchestration) and the reader (`analysis.loader`) share.

It lives in `analysis`, the lower of the two layers, and imports nothing, so orchestration can
import it without pulling in pandas and analysis never needs orchestration (or torch, or Ray).
docs/ARCHITECTURE.md ("MLflow schema") describes the layout these names make:

- experiment = the study's name;
- one parent run, tagged KIND_TAG=STUDY_KIND and STUDY_TAG=<name>;
- one child run per trial, tagged KIND_TAG=TRIAL_KIND, TRIAL_KEY_TAG, STATUS_TAG and
  PARENT_RUN_TAG, with the trial's params (strings in MLflow: the reader casts them back);
- under budgets.strategy branches, ROLE_TAG says a trial's role: a trunk (never a point of a
  fit) or a branch, which also carries TRUNK_KEY_TAG and FORK_STEP_TAG; a run without ROLE_TAG
  is an independent trial.

A trial's metrics are stored under section prefixes (`train/loss`, `test/loss_avg`,
`test_scale/loss_03`, `final/test_loss_avg`, `counters/images`), because MLflow's chart view
groups charts by the part before the first "/". `logged_metric_name` makes the stored name from
the trainer's, `plain_metric_name` turns it back: the loader's columns keep the trainer's names,
and stores written before the sections (plain names) load the same.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# --- tags -----------------------------------------------------------------------------------
KIND_TAG = "varscale.kind"
STUDY_TAG = "varscale.study"
TRIAL_KEY_TAG = "varscale.trial_key"
STATUS_TAG = "varscale.status"
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests child runs under it
ATTEMPTS_TAG = "varscale.attempts"
FAILURE_TAG = "varscale.failure"
MESSAGE_TAG = "varscale.message"
NODE_TAG = "varscale.node"
PID_TAG = "varscale.pid"
RESUMED_STEP_TAG = "varscale.resumed_step"
CHECKPOINT_STEP_TAG = "varscale.checkpoint_step"
STEPS_DONE_TAG = "varscale.steps_done"
# The identity of the token cache a trial trains on, set by the driver when it submits the trial:
# a launch refuses to mix caches within a study (orchestration.execution.study_checks).
TOKEN_CACHE_TAG = "varscale.token_cache"
# A trainer-reported value that disagrees with the param the driver logged (never fatal).
TRAINER_VALUE_TAG_PREFIX = "varscale.trainer_"
# Cooldown branches: a trial's role, and a branch's trunk and fork step.
ROLE_TAG = "varscale.role"
TRUNK_KEY_TAG = "varscale.trunk_key"
FORK_STEP_TAG = "varscale.fork_step"
FORKS_WRITTEN_TAG = "varscale.forks_written"  # a trunk's: the steps of the forks it has written so far
# Parent-run tags set at launch.
TRIAL_COUNT_TAG = "varscale.trials"
BUDGET_KIND_TAG = "varscale.budget_kind"
STRATEGY_TAG = "varscale.strategy"
# One tag per attempt of a trial (varscale.attempt.1, .2, ...): a JSON object with start, end
# (unix seconds), node, node_id, pid, cpus, gpus and the reason it ended (ATTEMPT_* below).
ATTEMPT_TAG_PREFIX = "varscale.attempt."
ATTEMPT_COMPLETED, ATTEMPT_FAILED, ATTEMPT_WORKER_DIED = "completed", "failed", "worker died"
# MLflow's own tags: the experiment's kind (3.x opens an experiment without it in its GenAI view,
# which shows traces and no runs) and a run's description (the parent's: the study summary).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CUSTOM_MODEL_KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"

# Values of KIND_TAG.
STUDY_KIND, TRIAL_KIND = "study", "trial"
# Values of ROLE_TAG (var_model.training.config_choices.TRIAL_ROLES); a trunk is never a point of a fit.
INDEPENDENT_ROLE, TRUNK_ROLE, BRANCH_ROLE = "independent", "trunk", "branch"

# Values of STATUS_TAG, and which of them end a trial for good (never re-run on relaunch).
PENDING, RUNNING, COMPLETED, DIVERGED, FAILED = "pending", "running", "completed", "diverged", "failed"
FINISHED_STATUSES = (COMPLETED, DIVERGED)
# The MLflow run status each trial status ends with.
TERMINAL_RUN_STATUS = {COMPLETED: "FINISHED", DIVERGED: "FINISHED", FAILED: "FAILED"}

# Text tags are cut to these lengths (MLflow refuses longer values).
TAG_VALUE_LIMIT = 5000
FAILURE_TAIL_LIMIT = 4000
PARAM_VALUE_LIMIT = 6000

# --- params of a trial's child run -----------------------------------------------------------
# The reader casts these strictly (a non-number is an error); any other param is cast loosely.
INTEGER_PARAMS = (
    "depth",
    "width",
    "heads",
    "params_total",
    "params_per_token",
    "flops_per_image",
    "flops_per_image_6n",
    "steps",
    "batch_size",
    "seed",
)
FLOAT_PARAMS = ("budget_value", "lr", "base_lr")
STRING_PARAMS = ("budget_kind", "schedule", "git_revision")
# Every param the driver logs at creation (the trainer adds its own at start).
TRIAL_PARAMS = (*INTEGER_PARAMS, *FLOAT_PARAMS, *STRING_PARAMS, "warmup_steps", "final_lr_fraction", "cpus", "gpus")

# --- metrics -----------------------------------------------------------------------------------
# Counters logged beside every step; the x axes of the fits.
COUNTERS = ("images", "tokens", "flops")
FINAL_PREFIX = "final_"  # the trainer's end-of-trial values: final_<metric>
# above_unigram_baseline: the trainer's flag (1.0) for a final test loss not below its cache's
# unigram baseline; the loader's fit_trials leaves such a trial out.
FINAL_METRICS = (
    "test_loss_avg",
    "test_loss_last",
    "test_error_avg",
    "test_error_last",
    "unigram_test_loss_avg",
    "above_unigram_baseline",
)
# Sample quality (issue 13, docs/SAMPLE_QUALITY.md): the trainer logs sample_<name> at its end (and
# at evaluation points), its finals as final_sample_<name>, and its protocol as params
# sample_protocol_<field> (var_model.evaluation writes these names; tests/model checks they agree).
SAMPLE_METRICS = (
    "sample_fd",
    "sample_accuracy",
    "sample_precision",
    "sample_recall",
    "sample_fid",
    "sample_inception_score",
)
SAMPLE_PROTOCOL_PREFIX = "sample_protocol_"
PER_SCALE_METRIC_PATTERN = r"test_(loss|error)_scale_\d\d"
TRAIN_LOSS = "train_loss"
# Parent-run metrics of the tokenizer stage: tokenizer_<report or baseline name>.
TOKENIZER_METRIC_PREFIX = "tokenizer_"
# Parent-run metrics and tags of `varscale fit`: fit.<metric>.<N|C>[.<budget>].<number>
FIT_PREFIX = "fit"
# A trial's spend, summed over its attempts (allocated GPU- and CPU-core-seconds).
GPU_SECONDS, CPU_SECONDS = "gpu_seconds_total", "cpu_seconds_total"
# Logged by the trial callback at each train log: the measured rate since the previous one.
IMAGES_PER_SECOND = "images_per_second"

# Sections of the stored metric names (see the module docstring). Names in neither column of
# SECTION_OF_NAME go by their prefix: final_X -> final/X, test_X -> test/X, train_X -> train/X.
SECTION_SEPARATOR = "/"
SECTION_OF_NAME = {
    "lr": "train",
    "elapsed_seconds": "train",
    IMAGES_PER_SECOND: "train",
    **{name: "counters" for name in COUNTERS},
    GPU_SECONDS: "spend",
    CPU_SECONDS: "spend",
}
PREFIX_SECTIONS = (("final_", "final"), ("test_", "test"), ("train_", "train"))
PER_SCALE_SECTION = "test_scale"  # test_loss_scale_03 -> test_scale/loss_03
_PER_SCALE_NAME = re.compile(r"test_(loss|error)_scale_(\d\d)")
_PER_SCALE_SHORT = re.compile(r"(loss|error)_(\d\d)")


def logged_metric_name(name: str) -> str:
    """The trainer's metric name -> its name in MLflow, under a section ('train_loss' -> 'train/loss')."""
    if SECTION_SEPARATOR in name:
        return name
    per_scale = _PER_SCALE_NAME.fullmatch(name)
    if per_scale:
        return f"{PER_SCALE_SECTION}/{per_scale[1]}_{per_scale[2]}"
    if name in SECTION_OF_NAME:
        return f"{SECTION_OF_NAME[name]}/{name}"
    for prefix, section in PREFIX_SECTIONS:
        if name.startswith(prefix):
            return f"{section}/{name.removeprefix(prefix)}"
    return name


def plain_metric_name(stored: str) -> str:
    """A metric's name in MLflow -> the trainer's name ('train/loss' -> 'train_loss'); a name
    without a section (a store written before them) is returned as it is."""
    section, separator, rest = stored.partition(SECTION_SEPARATOR)
    if not separator:
        return stored
    per_scale = _PER_SCALE_SHORT.fullmatch(rest)
    if section == PER_SCALE_SECTION and per_scale:
        return f"test_{per_scale[1]}_scale_{per_scale[2]}"
    if SECTION_OF_NAME.get(rest) == section:
        return rest
    for prefix, prefix_section in PREFIX_SECTIONS:
        if section == prefix_section:
            return f"{prefix}{rest}"
    return stored


# --- artifacts and files ---------------------------------------------------------------------
RESOLVED_SPEC_FILE = "study.resolved.yaml"  # in <storage>/ and on the parent run
DRY_RUN_FILE = "dry_run.txt"
TOKENIZER_STAGE_FILE = "tokenizer_stage.json"
FITS_ARTIFACT_FOLDER = "fits"
TRIAL_CONFIG_FILE = "trial_config.yaml"  # in each trial's folder and on its child run
# In each trial's folder, rewritten atomically at every train log by the trial's callback and
# read by the launch's progress display: {"step", "steps", "train_loss", "images_per_second", "time"}.
PROGRESS_FILE = "progress.json"


def redact_uri(uri: str) -> str:
    """The URI without user:password: credentials belong in MLFLOW_TRACKING_* variables, never in
    a printed line, a message or a saved file."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def redact_text(text: str, uri: str | None) -> str:
    """`text` (an error, a traceback) without the credentials of `uri`: the URI's user:password
    part and the password alone, wherever they appear."""
    if not uri:
        return text
    parts = urlsplit(uri)
    secrets = []
    if parts.username is not None or parts.password is not None:
        secrets.append(parts.netloc.rsplit("@", 1)[0] + "@")  # user:password@ (percent-encoded as given)
    if parts.password:
        secrets.append(parts.password)
    for secret in secrets:
        text = text.replace(secret, "" if secret.endswith("@") else "***")
    return text
