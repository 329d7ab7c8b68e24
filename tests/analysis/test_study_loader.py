"""load_study reads the ARCHITECTURE.md MLflow schema from a real SQLite store."""

import mlflow.tracking
import numpy as np
import pytest
from synthetic_study import DEPTHS, FINAL_EVAL_FACTOR, N_SCALES, STEPS

import analysis
from analysis import StudyNotFoundError, fit_power_law, load_study

CREDENTIALED_URI = "https://alice:s3cret@mlflow.example.org:5443/"


@pytest.fixture(scope="module")
def study(synthetic_study):
    return load_study(synthetic_study["study"], synthetic_study["tracking_uri"])


def test_one_row_per_trial_with_typed_params_and_statuses(study):
    trials = study.trials
    assert len(trials) == len(DEPTHS) + 2
    assert trials["trial_key"].is_unique
    assert trials["depth"].dtype == np.int64 and trials["params_total"].dtype == np.int64
    assert trials["budget_value"].dtype == float and trials["budget_kind"].iloc[0] == "images"
    assert set(trials["status"]) == {"completed", "failed", "diverged"}
    failed = trials.set_index("trial_key").loc["d4-b1e12-s0"]
    assert failed["status"] == "failed" and failed["images"] == STEPS // 2 * 256  # latest value, no final
    for column in (
        "study",
        "run_id",
        "params_per_token",
        "seed",
        "test_loss_avg",
        "test_error_last",
        f"test_loss_scale_{N_SCALES - 1:02d}",
    ):
        assert column in trials


def test_flops_exact_and_6nd_side_by_side(study):
    trials = study.fit_trials()
    np.testing.assert_allclose(trials["flops_6nd"], 6 * trials["params_total"] * trials["tokens"])
    np.testing.assert_allclose(trials["flops"] / trials["flops_6nd"], 1.1, rtol=1e-6)


def test_fits_use_completed_trials_only(study, synthetic_study):
    trials = study.fit_trials()
    assert (trials["status"] == "completed").all() and len(trials) == len(DEPTHS)
    assert set(study.fit_curves()["trial_key"]) == set(trials["trial_key"])
    np.testing.assert_allclose(trials["test_loss_last"], [synthetic_study["finals"][k] for k in trials["trial_key"]])
    fit = fit_power_law(trials["params_total"], trials["test_loss_last"], x_unit_scale=1e9)
    assert fit.alpha == pytest.approx(synthetic_study["alpha"], abs=0.01)
    assert fit.beta == pytest.approx(synthetic_study["beta"], rel=0.1)


def test_curves_keep_the_last_value_of_a_relogged_step_and_align_counters(study):
    curves = study.curves
    first = curves[(curves["trial_key"] == f"d{DEPTHS[0]}-b1e12-s0") & (curves["metric"] == "test_loss_last")]
    assert first["step"].tolist() == list(range(1, STEPS + 1))
    assert first.set_index("step").loc[3, "value"] != 123.0  # the stale pre-crash value was replaced
    np.testing.assert_allclose(first["images"], first["step"] * 256)
    assert first["flops"].notna().all() and (first["params_total"] > 0).all()
    assert not curves["metric"].str.startswith("final_").any()


def test_parent_run_is_found(study, synthetic_study):
    assert study.parent_run_id == synthetic_study["parent_run_id"]


def test_unknown_study_lists_the_existing_ones(synthetic_study):
    with pytest.raises(StudyNotFoundError, match=r"no study named 'nope'.*synthetic-var-study"):
        load_study("nope", synthetic_study["tracking_uri"])


def test_per_scale_columns_prefer_the_final_eval(study):
    trials = study.trials.set_index("trial_key")
    completed = trials.loc[f"d{DEPTHS[0]}-b1e12-s0"]
    np.testing.assert_allclose(completed["test_loss_scale_01"], FINAL_EVAL_FACTOR * completed["test_loss_last"] * 0.7)
    failed = trials.loc["d4-b1e12-s0"]  # no finals: the latest periodic eval
    np.testing.assert_allclose(failed["test_loss_scale_01"], failed["test_loss_last"] * 0.7)


def test_study_not_found_error_does_not_print_tracking_uri_credentials(monkeypatch):
    class NoStudies:
        def __init__(self, tracking_uri=None):
            pass

        def get_experiment_by_name(self, name):
            return None

        def search_experiments(self):
            return []

    monkeypatch.setattr(mlflow.tracking, "MlflowClient", NoStudies)
    with pytest.raises(StudyNotFoundError) as raised:
        analysis.load_study("nope", CREDENTIALED_URI)
    assert "s3cret" not in str(raised.value) and "mlflow.example.org:5443" in str(raised.value)
