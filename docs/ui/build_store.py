"""A small real study store for the UI screenshots, written without Ray (a loaded machine can
time Ray's start out): the tokenizer stage, then each trial of the tiny test study through the
trial task (`execute_trial`, the real trainer, the real MLflow writers), then `varscale fit`.

    .venv/bin/python docs/ui/build_store.py /tmp/ui_store/tiny_test
"""

from __future__ import annotations

import sys
from pathlib import Path

from orchestration.commands.fit import fit_study
from orchestration.execution.tokenizer_task import run_tokenizer_stage
from orchestration.execution.trial_task import TrialRequest, execute_trial
from orchestration.study.loading import load_study
from orchestration.study.trial_config import build_trial_config, plan_study, trial_output_dir
from orchestration.tracking.study_runs import StudyTracker, git_revision

TINY = str(Path(__file__).resolve().parents[2] / "tests" / "orchestration" / "fixtures" / "tiny_study.yaml")
OVERRIDES = ["model.depths=[1,2,3]", "budgets.values=[32,64]"]


def main(storage: str) -> None:
    spec = load_study(TINY, [f"storage={storage}", *OVERRIDES])
    tracker = StudyTracker(spec)
    tracker.start_parent()
    cache = run_tokenizer_stage(spec)["cache_path"]
    revision = git_revision()
    for trial in plan_study(spec):
        config = build_trial_config(spec, trial, cache)
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        run_id = tracker.create_trial_run(trial, revision)
        request = TrialRequest(trial.key, run_id, spec.tracking_uri, trial_output_dir(spec, trial), 1, config)
        print(trial.key, execute_trial(request)["status"], flush=True)
    tracker.finish_parent()
    fit_study(spec.name, spec.tracking_uri, str(Path(storage, "fits")), n_bootstrap=20)


if __name__ == "__main__":
    main(sys.argv[1])
