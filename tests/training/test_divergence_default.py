"""A diverging trial ends "diverged" by default (a bound from ln V, not only NaN/inf), and a
completed trial carries its cache's unigram baseline and a flag when it did not beat it."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from var_model.errors import ConfigError
from var_model.tokenizer import TokenCache
from var_model.tokenizer.baseline import BASELINES_FILE, stored_unigram_baselines, unigram_baselines
from var_model.training import TrialConfig, run_trial, unigram_reference
from var_model.training.config_choices import DIVERGENCE_MULTIPLE_OF_UNIFORM_LOSS
from var_model.training.result import ABOVE_BASELINE_METRIC, UNIGRAM_BASELINE_METRIC


def test_a_trial_at_a_huge_lr_ends_diverged_not_completed(tiny_trial):
    # lr 1000 on the tiny trial sits at train losses of ~1e7 (ln 64 = 4.16): finite, so only a
    # default bound can catch it, as the probe's d2 trials at 885-1884 were not
    result = run_trial(tiny_trial.replace(base_lr=1e3), resume=False)
    assert result.status == "diverged"
    assert result.steps == tiny_trial.log_every  # stopped at the first log point
    assert "ln V" in result.message and "64 codes" in result.message


def test_the_default_bound_is_a_multiple_of_the_uniform_guess_and_can_be_set_or_turned_off():
    config = TrialConfig(token_cache="c", output_dir="o")
    assert config.divergence_loss is None
    assert config.divergence_limit(4096) == pytest.approx(DIVERGENCE_MULTIPLE_OF_UNIFORM_LOSS * math.log(4096))
    assert config.replace(divergence_loss=7.5).divergence_limit(4096) == 7.5
    assert config.replace(divergence_loss=math.inf).divergence_limit(4096) == math.inf


@pytest.mark.parametrize("value", [0, -1.0, True, "high"])
def test_a_divergence_loss_that_is_no_positive_number_is_refused(value):
    with pytest.raises(ConfigError, match="divergence_loss"):
        TrialConfig(token_cache="c", output_dir="o", divergence_loss=value)


def test_a_completed_trial_reports_the_unigram_baseline_and_whether_it_stayed_above(tiny_trial):
    result = run_trial(tiny_trial, resume=False)
    assert result.status == "completed"
    baseline = unigram_reference(tiny_trial)["unigram_test_loss_avg"]
    assert result.metrics[UNIGRAM_BASELINE_METRIC] == baseline
    above = result.metrics["final_test_loss_avg"] >= baseline
    assert result.metrics[ABOVE_BASELINE_METRIC] == float(above)
    # 12 steps of a d1 VAR stay above the baseline of this cache (3.3 against 1.7 nats)
    assert above and "unigram baseline" in result.message


def test_a_trial_that_learns_is_not_flagged(tiny_trial):
    # at lr 10x the fixture's, 12 steps reach ~1.54 nats against the baseline's 1.74
    result = run_trial(tiny_trial.replace(base_lr=0.5), resume=False)
    assert result.status == "completed"
    assert result.metrics["final_test_loss_avg"] < result.metrics[UNIGRAM_BASELINE_METRIC]
    assert result.metrics[ABOVE_BASELINE_METRIC] == 0.0 and result.message == ""


def test_trials_written_when_the_default_was_inf_still_resume_and_stay_finished(tiny_trial, stop_after_checkpoint):
    old = tiny_trial.replace(divergence_loss=math.inf)
    with pytest.raises(KeyboardInterrupt):
        run_trial(old, callback=stop_after_checkpoint(6), resume=False)
    resumed = run_trial(tiny_trial)  # the default now: a stop rule, free to differ on resume
    assert resumed.status == "completed"
    assert run_trial(old) == resumed  # and the finished trial is returned as is


def test_the_baseline_is_computed_once_per_cache_and_kept_beside_it(tiny_stage, tmp_path):
    _, stage = tiny_stage
    copy = tmp_path / "tokens"
    shutil.copytree(stage.cache_path, copy)
    cache = TokenCache.open(copy, verify=False)
    stored = copy / BASELINES_FILE
    assert json.loads(stored.read_text())["cache_key"] == cache.key  # the stage wrote it
    assert stored_unigram_baselines(cache) == unigram_baselines(cache)
    # a file of another cache (copied over, or cut) is not believed: computed again and rewritten
    stored.write_text(json.dumps({"cache_key": "another", "baselines": {"unigram_test_loss_avg": 0.0}}))
    assert stored_unigram_baselines(cache) == unigram_baselines(cache)
    assert json.loads(stored.read_text())["cache_key"] == cache.key
