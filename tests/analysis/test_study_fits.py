"""fit_study_laws on in-memory studies: one law vs N per budget, the frontier over all runs, IsoFLOP
for FLOP budgets, and fit errors reported instead of raised."""

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import StudyFrame, fit_study_laws

SIZES = (2e7, 5e7, 1e8, 3e8, 1e9)


def _study(budget_kind, budget_values, loss_of):
    trials, curves = [], []
    for budget in budget_values:
        for N in SIZES:
            key = f"n{N:.0e}-b{budget:.0e}"
            tokens = budget if budget_kind == "tokens" else budget / (6 * N)
            loss = loss_of(N, tokens)
            trials.append(
                {
                    "trial_key": key,
                    "status": "completed",
                    "params_total": N,
                    "tokens": tokens,
                    "flops": 6 * N * tokens,
                    "budget_kind": budget_kind,
                    "budget_value": budget,
                    "test_loss_last": loss,
                    "test_loss_avg": 0.9 * loss,
                }
            )
            for step, fraction in enumerate((0.25, 0.5, 1.0)):
                for metric, value in (
                    ("test_loss_last", loss / fraction**0.1),
                    ("test_loss_avg", 0.9 * loss / fraction**0.1),
                ):
                    curves.append(
                        {
                            "trial_key": key,
                            "metric": metric,
                            "step": step,
                            "value": value,
                            "flops": 6 * N * tokens * fraction,
                            "params_total": N,
                        }
                    )
    return StudyFrame(study="in-memory", trials=pd.DataFrame(trials), curves=pd.DataFrame(curves))


def test_one_size_law_per_data_budget():
    study = _study("tokens", (1e9, 1e10), lambda N, D: 1.0 + 400 / N**0.34 + 400 / D**0.28)
    fits = fit_study_laws(study, metrics=("test_loss_last",), n_bootstrap=10, parametric=False)
    assert fits.budgets == ("tokens=1e+09", "tokens=1e+10")
    small, large = (fits.law("test_loss_last", "N", budget) for budget in fits.budgets)
    assert small.fit.n_points == large.fit.n_points == len(SIZES)
    assert fits.law("test_loss_last", "N") is large  # default: the largest budget
    assert np.all(large.fit.predict(np.array(SIZES)) < small.fit.predict(np.array(SIZES)))
    frontier = fits.law("test_loss_last", "C")
    assert frontier.budget == "all" and len(frontier.trial_keys) == 2 * len(SIZES)
    table = fits.table()
    assert list(table["budget"]) == ["tokens=1e+09", "tokens=1e+10", "all"]
    assert table["predicted_low"].iloc[0] <= table["predicted"].iloc[0] <= table["predicted_high"].iloc[0]
    assert fits.isoflop == {} and fits.parametric == {}


def test_several_budgets_give_a_parametric_fit_with_intervals():
    study = _study("tokens", (1e9, 1e10, 1e11), lambda N, D: 1.69 + 406.4 / N**0.34 + 410.7 / D**0.28)
    fits = fit_study_laws(study, metrics=("test_loss_last",), n_bootstrap=50)
    parametric = fits.parametric["test_loss_last"]
    assert parametric.E == pytest.approx(1.69, abs=0.02)
    assert parametric.alpha == pytest.approx(0.34, abs=0.02) and parametric.beta == pytest.approx(0.28, abs=0.02)
    low, high = fits.parametric_bootstrap["test_loss_last"].intervals["alpha"]
    assert low <= parametric.alpha <= high


def test_flop_budgets_add_isoflop_profiles():
    study = _study("flops", (1e17, 1e18, 1e19), lambda N, D: 1.69 + 406.4 / N**0.34 + 410.7 / D**0.28)
    fits = fit_study_laws(study, metrics=("test_loss_last",), n_bootstrap=0, parametric=False)
    assert set(fits.isoflop) == {"test_loss_last"}
    assert 0 < fits.isoflop["test_loss_last"].n_exponent < 1


def test_a_metric_that_was_never_logged_is_reported_not_raised():
    study = _study("tokens", (1e10,), lambda N, D: 1.0 + 400 / N**0.34)
    fits = fit_study_laws(study, metrics=("test_loss_last", "test_error_last"), n_bootstrap=0)
    assert fits.law("test_loss_last", "N").fit is not None
    assert fits.parametric == {}  # one budget: D does not vary enough to identify B and beta
    failed = fits.law("test_error_last", "N")
    assert failed.fit is None and "test_error_last" in failed.error
    assert fits.law("test_error_last", "C").error is not None
    with pytest.raises(KeyError, match="no law"):
        fits.law("test_loss_last", "N", "tokens=5")


def test_compute_law_of_a_one_depth_study_survives_its_impossible_holdout_check():
    # One model size, three budgets: the frontier law vs C is fittable, but the extrapolation
    # check (hold out the largest model) is not. The optional check must not discard the law.
    trials, curves = [], []
    for budget in (1e12, 1e13, 1e14):
        key = f"d4-b{budget:.0e}-s0"
        loss = 3.0 * (budget / 1e15) ** -0.1
        trials.append(
            {
                "study": "one-depth",
                "trial_key": key,
                "run_id": key,
                "status": "completed",
                "depth": 4,
                "params_total": 64_000_000,
                "budget_kind": "flops",
                "budget_value": budget,
                "tokens": budget / 4e8,
                "flops": budget,
                "test_loss_last": loss,
            }
        )
        for step in (1, 2, 3, 4):
            curves.append(
                {
                    "trial_key": key,
                    "run_id": key,
                    "metric": "test_loss_last",
                    "step": step,
                    "value": 3.0 * (budget * step / 4 / 1e15) ** -0.1,
                    "images": 0.0,
                    "tokens": 0.0,
                    "flops": budget * step / 4,
                    "depth": 4,
                    "params_total": 64_000_000,
                }
            )
    frame = StudyFrame("one-depth", pd.DataFrame(trials), pd.DataFrame(curves))
    fits = analysis.fit_study_laws(frame, metrics=("test_loss_last",), n_bootstrap=0, parametric=False)
    law = fits.law("test_loss_last", "C")
    assert law.error is None and law.fit is not None
    assert law.fit.alpha == pytest.approx(-0.1, abs=1e-6)
    assert law.extrapolation is None
