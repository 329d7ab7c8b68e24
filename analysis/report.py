"""A study's fits as a report: which figures to draw, the law table, and results.json.

`varscale fit` writes these to files and MLflow; the notebook shows the same figures and table.
Both call this module, so the choice of figures is made once. Nothing here fits or prints.
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure

from analysis.loader import StudyFrame
from analysis.mlflow_schema import redact_uri
from analysis.plots import (
    plot_frontier,
    plot_per_scale_loss,
    plot_predicted_vs_actual,
    plot_sample_laws,
    plot_scaling_vs_size,
    plot_training_curves,
)
from analysis.sample_metrics import sample_trials
from analysis.study_fits import StudyFits
from analysis.text import text_table


def file_label(budget: str) -> str:
    """A budget label ('images=1e6') as a file-name and MLflow-key safe string."""
    return "".join(character if character.isalnum() or character in "-." else "_" for character in budget)


def _trials_of(trials, law) -> object:
    return trials[trials["trial_key"].isin(law.trial_keys)]


def report_figures(study: StudyFrame, fits: StudyFits) -> dict[str, Figure]:
    """The figures of a study, by file stem: the size laws per budget, the compute frontier per
    metric, per-scale loss, training curves and the extrapolation check, each only when its fit
    exists."""
    trials, curves = study.fit_trials(), study.fit_curves()
    figures: dict[str, Figure] = {}
    for budget in fits.budgets:
        size_laws = fits.size_laws(budget)
        if not size_laws:
            continue
        rows = _trials_of(trials, next(iter(size_laws.values())))
        stem = "scaling_vs_size" if len(fits.budgets) == 1 else f"scaling_vs_size_{file_label(budget)}"
        figures[stem] = plot_scaling_vs_size(
            rows,
            {metric: law.fit for metric, law in size_laws.items()},
            {metric: law.bootstrap for metric, law in size_laws.items() if law.bootstrap is not None},
        )
    for metric, law in fits.compute_laws().items():
        figures[f"frontier_{metric}"] = plot_frontier(curves, law.frontier, law.bootstrap)
    if fits.per_scale:
        # Per-scale laws are fitted at the largest budget: draw those trials only.
        largest = fits.size_laws()
        rows = _trials_of(trials, next(iter(largest.values()))) if largest else trials
        figures["per_scale_loss"] = plot_per_scale_loss(rows, fits.per_scale)
    if not curves.empty and (curves["metric"] == "test_loss_last").any():
        figures["training_curves"] = plot_training_curves(curves)
    extrapolations = {
        f"{law.metric} vs {law.against}" + (f" ({law.budget})" if law.budget != "all" else ""): law.extrapolation
        for law in fits.laws
        if law.extrapolation is not None
    }
    if extrapolations:
        figures["predicted_vs_actual"] = plot_predicted_vs_actual(extrapolations)
    if fits.samples.metrics:
        with_samples = sample_trials(study)
        figures["sample_metrics_vs_size"] = plot_sample_laws(with_samples, fits.samples, "N")
        figures["sample_metrics_vs_compute"] = plot_sample_laws(with_samples, fits.samples, "C")
        figures["sample_metrics_vs_test_loss"] = plot_sample_laws(with_samples, fits.samples, "test_loss")
    return figures


def law_table_text(fits: StudyFits) -> str:
    """The fitted laws as an aligned table: one line per law, then a line per law that could not
    be fitted, the IsoFLOP exponents and the parametric L(N, D)."""
    table = fits.table()
    header = ("metric", "vs", "budget", "law", "alpha [95% CI]", "r", "n", "holdout err")
    rows = []
    for row in table[table["error"].isna()].itertuples():
        interval = f"[{row.alpha_low:.4g}, {row.alpha_high:.4g}]" if math.isfinite(row.alpha_low) else ""
        holdout = f"{row.holdout_relative_error:+.2%}" if math.isfinite(row.holdout_relative_error) else "-"
        rows.append(
            [
                row.metric,
                row.against,
                row.budget,
                row.law,
                f"{row.alpha:.4g} {interval}",
                f"{row.r:.4f}",
                str(row.n_points),
                holdout,
            ]
        )
    failed = [
        [row.metric, row.against, row.budget, f"not fitted: {row.error}"]
        for row in table[table["error"].notna()].itertuples()
    ]
    lines = text_table(header, rows, right_aligned=[False] * 5 + [True] * 3) if rows else [" ".join(header)]
    # A law that could not be fitted gets a plain line: its reason is free text, too long to align.
    lines += [" ".join(cells) for cells in failed]
    for metric, fit in fits.isoflop.items():
        lines.append(
            f"IsoFLOP {metric}: N_opt ~ C^{fit.n_exponent:.3f}, D_opt ~ C^{fit.d_exponent:.3f} "
            f"({len(fit.budgets)} budgets; grid-bias caveat in results.json)"
        )
    lines += sample_law_lines(fits)
    for metric, fit in fits.parametric.items():
        lines.append(
            f"L(N, D) {metric}: E={fit.E:.4g} + {fit.A:.4g}/N^{fit.alpha:.3f} + {fit.B:.4g}/D^{fit.beta:.3f}; "
            f"N_opt ~ C^{fit.n_exponent:.3f}" + (f"; warnings: {list(fit.warnings)}" if fit.warnings else "")
        )
    return "\n".join(lines)


def sample_law_lines(fits: StudyFits) -> list[str]:
    """The sample-quality laws, one line each, after a line with the protocol they share."""
    if not fits.samples.laws:
        return []
    protocol = fits.samples.protocol
    shown = ("samples", "cfg", "top_k", "top_p", "seed", "feature")
    lines = [
        "sample metrics, protocol: "
        + ", ".join(f"{name}={_protocol_value(protocol[name])}" for name in shown if name in protocol)
    ]
    for row in fits.samples.table().itertuples():
        where = f"{row.metric} vs {row.against} ({row.form}, {row.budget})"
        if not isinstance(row.law, str):  # None, or NaN once the table holds no law at all
            lines.append(f"{where}: not fitted: {row.error}")
            continue
        interval = f" [{row.alpha_low:.3g}, {row.alpha_high:.3g}]" if math.isfinite(row.alpha_low) else ""
        rank = f", spearman {row.spearman:.3f}" if math.isfinite(row.spearman) else ""
        lines.append(f"{where}: {row.law}, alpha {row.alpha:.4g}{interval}, r {row.r:.4f}, n {row.n_points}{rank}")
    return lines


def _protocol_value(value):
    # MLflow params come back as text and the loader reads numbers as floats: 50, not 50.0
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _finite_or_none(value):
    return value if isinstance(value, (int, str)) or (isinstance(value, float) and math.isfinite(value)) else None


def report_results(study: StudyFrame, fits: StudyFits, tracking_uri: str | None) -> dict:
    """Everything fitted, as JSON-ready data (results.json)."""
    laws = []
    for law in fits.laws:
        entry = {key: _finite_or_none(value) for key, value in law.row().items()}
        if law.fit is not None:
            entry["fit"] = law.fit.to_dict()
        if law.bootstrap is not None:
            entry["bootstrap"] = {k: v for k, v in law.bootstrap.to_dict().items() if k != "prediction_intervals"}
        if law.extrapolation is not None:
            entry["extrapolation"] = law.extrapolation.to_dict()
        laws.append(entry)
    isoflop = {
        metric: {
            "n_exponent": fit.n_exponent,
            "d_exponent": fit.d_exponent,
            "warnings": list(fit.warnings),
            "budgets": fit.budgets.to_dict(orient="records"),
        }
        for metric, fit in fits.isoflop.items()
    }
    parametric = {}
    for metric, fit in fits.parametric.items():
        bootstrap = fits.parametric_bootstrap.get(metric)
        parametric[metric] = {
            **fit.to_dict(),
            "n_exponent": fit.n_exponent,
            "d_exponent": fit.d_exponent,
            "intervals": None
            if bootstrap is None
            else {name: list(interval) for name, interval in bootstrap.intervals.items()},
        }
    # results.json is saved and logged as an artifact: never with the URI's user:password.
    return {
        "study": fits.study,
        "tracking_uri": tracking_uri and redact_uri(tracking_uri),
        "parent_run_id": study.parent_run_id,
        "parametric": parametric,
        "n_trials": int(len(study.trials)),
        "status_counts": study.trials["status"].value_counts().to_dict(),
        "options": fits.options,
        "budgets": list(fits.budgets),
        "laws": laws,
        "isoflop": isoflop,
        "per_scale": {name: fit.to_dict() for name, fit in fits.per_scale.items()},
        "samples": {
            "protocol": {key: _finite_or_none(value) for key, value in fits.samples.protocol.items()},
            "laws": [{key: _finite_or_none(value) for key, value in law.row().items()} for law in fits.samples.laws],
        },
    }
