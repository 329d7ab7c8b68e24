"""Sample-quality laws: known exponents are recovered from synthetic trials, trials measured
under different protocols are refused with the differing fields named, and the laws reach the
law table, the figures and results.json of `varscale fit`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.loader import StudyFrame
from analysis.report import law_table_text, report_figures, report_results
from analysis.sample_metrics import (
    PROTOCOL_PREFIX,
    ProtocolMismatchError,
    fit_sample_laws,
    pareto_points,
)
from analysis.study_fits import fit_study_laws

SIZES = np.array([1e6, 2e6, 4e6, 8e6, 16e6])
ALPHA_FD, BETA_FD = -0.3, 50.0


def _study(protocol_changes: dict | None = None, in_trials: bool = True) -> StudyFrame:
    rng = np.random.default_rng(0)
    rows = []
    for index, size in enumerate(SIZES):
        fd = (BETA_FD * size / 1e9) ** ALPHA_FD * np.exp(rng.normal(0, 0.01))
        rows.append(
            {
                "trial_key": f"d{index + 1}-b1e3-s0",
                "status": "completed",
                "role": "independent",
                "params_total": size,
                "flops": 6 * size * 1e5,
                "tokens": 1e5,
                "budget_value": 1e3,
                "budget_kind": "images",
                "test_loss_avg": 4.0 * (size / 1e6) ** -0.1,
                "sample_fd": fd,
                "sample_accuracy": 1 - 0.5 * (size / 1e6) ** -0.4,
                f"{PROTOCOL_PREFIX}samples": 20,
                f"{PROTOCOL_PREFIX}cfg": 1.5,
                f"{PROTOCOL_PREFIX}feature_sha256": "abc",
            }
        )
    trials = pd.DataFrame(rows)
    for column, values in (protocol_changes or {}).items():
        trials[column] = values
    curves = pd.DataFrame(columns=["trial_key", "run_id", "metric", "step", "value", "images", "tokens", "flops"])
    if not in_trials:
        curves = pd.DataFrame(
            [
                {"trial_key": key, "metric": "sample_fd", "step": 10, "value": value, "flops": 1.0}
                for key, value in zip(trials["trial_key"], trials["sample_fd"], strict=True)
            ]
        )
        trials = trials.drop(columns="sample_fd")
    return StudyFrame("samples", trials, curves)


def test_the_sample_fd_exponent_is_recovered_against_size():
    fits = fit_sample_laws(_study(), n_bootstrap=10)
    law = fits.law("sample_fd", "N", "var")
    assert law.fit.alpha == pytest.approx(ALPHA_FD, abs=0.01)
    assert law.bootstrap.intervals["alpha"][0] < ALPHA_FD < law.bootstrap.intervals["alpha"][1]
    accuracy = fits.law("sample_accuracy", "N", "var")  # fitted as its gap 1 - accuracy
    assert accuracy.fit.alpha == pytest.approx(-0.4, abs=1e-6)
    assert fits.law("sample_fd", "test_loss").rank_correlation == pytest.approx(1.0)
    assert fits.protocol == {"samples": 20, "cfg": 1.5, "feature_sha256": "abc"}


def test_sample_metrics_logged_only_as_histories_are_read():
    fits = fit_sample_laws(_study(in_trials=False), n_bootstrap=0)
    assert "sample_fd" in fits.metrics
    assert fits.law("sample_fd", "N").fit.alpha == pytest.approx(ALPHA_FD, abs=0.01)


def test_different_protocols_are_refused_naming_the_fields():
    changes = {f"{PROTOCOL_PREFIX}cfg": [1.5, 1.5, 2.0, 1.5, 1.5], f"{PROTOCOL_PREFIX}samples": [20, 20, 20, 20, 50]}
    with pytest.raises(ProtocolMismatchError) as error:
        fit_sample_laws(_study(changes), n_bootstrap=0)
    message = str(error.value)
    assert "cfg: 1.5 (d1-b1e3-s0, d2-b1e3-s0, d4-b1e3-s0, d5-b1e3-s0); 2.0 (d3-b1e3-s0)" in message
    assert "samples: 20 (" in message and "50 (d5-b1e3-s0)" in message
    assert "feature_sha256" not in message


def test_the_frontier_keeps_only_trials_no_cheaper_trial_beats():
    trials = pd.DataFrame({"trial_key": list("abc"), "flops": [1.0, 2.0, 3.0], "sample_fd": [5.0, 6.0, 4.0]})
    assert list(pareto_points(trials, "sample_fd")["trial_key"]) == ["a", "c"]


def test_sample_laws_reach_the_fit_report():
    study = _study()
    fits = fit_study_laws(study, metrics=("test_loss_avg",), n_bootstrap=0, parametric=False)
    text = law_table_text(fits)
    assert "sample metrics, protocol: samples=20, cfg=1.5" in text
    assert "sample_fd vs N (var, all): sample_fd = (" in text
    assert {"sample_metrics_vs_size", "sample_metrics_vs_test_loss"} <= set(report_figures(study, fits))
    results = report_results(study, fits, None)
    assert results["samples"]["protocol"]["samples"] == 20
    assert any(law["metric"] == "1 - sample_accuracy" for law in results["samples"]["laws"])


def test_a_metric_with_no_trend_says_why_it_was_not_fitted():
    # Samples at the tokenizer's floor: fd flat in N, a perfect precision (gap 0). The report
    # names each refusal instead of printing "nan"; the protocol's counts print as integers even
    # when the loader reads them back as floats.
    study = _study({"sample_fd": 500.0, "sample_accuracy": 1.0, f"{PROTOCOL_PREFIX}samples": 50.0})
    fits = fit_study_laws(study, metrics=("test_loss_avg",), n_bootstrap=0, parametric=False)
    text = law_table_text(fits)
    assert "sample metrics, protocol: samples=50, cfg=1.5" in text
    sample_lines = [line for line in text.splitlines() if line.startswith(("sample_fd vs", "1 - sample_accuracy vs"))]
    assert sample_lines and all(": not fitted: " in line for line in sample_lines), sample_lines
    assert "nan" not in "\n".join(sample_lines)
