"""Figures for scaling studies. Each function returns a matplotlib Figure drawn on an Agg canvas
(no pyplot, no global figure state, no display needed); save with fig.savefig(path).

Inputs are results from the fitting functions (and the loader's DataFrames); nothing here fits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps, colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.mathtext import MathTextParser

from analysis.bootstrap import BootstrapResult, prediction_band
from analysis.extrapolation import ExtrapolationResult
from analysis.frontier import FrontierFit
from analysis.power_law import PowerLawFit
from analysis.sample_metrics import AGAINST, LOSS_COLUMN, SampleFits, fitted_name, fitted_values

AXIS_LABELS = {"params_total": "parameters N", "flops": "training compute C (FLOPs)"}


class _Canvas(FigureCanvasAgg):
    """The Agg canvas, with one mathtext parser for every figure. Each Agg renderer makes its own
    parser, whose cache of parsed strings dies with it, so every figure re-parsed the same log-axis
    tick labels ($10^{5}$, $2.7\\times10^{0}$, ...) with pyparsing: 40% of the time to save a study's
    PNGs. The parse depends only on the string, dpi and font, so the pixels are the same."""

    _mathtext_parser = MathTextParser("path")  # what RendererAgg makes for itself

    def get_renderer(self):
        renderer = super().get_renderer()
        renderer.mathtext_parser = self._mathtext_parser
        return renderer


def _new_figure(n_panels: int = 1, panel_size=(5.0, 4.0)) -> tuple[Figure, list]:
    columns = min(n_panels, 2)
    rows = int(np.ceil(n_panels / columns))
    width, height = panel_size[0] * columns, panel_size[1] * rows
    figure = Figure(figsize=(width, height))
    _Canvas(figure)
    axes = [figure.add_subplot(rows, columns, index + 1) for index in range(n_panels)]
    # Fixed margins in inches, not constrained layout: measuring every log-axis tick label for the
    # layout engine made saving a figure several times slower.
    figure.subplots_adjust(
        left=1.15 / width, right=1 - 0.2 / width, bottom=0.65 / height, top=1 - 0.45 / height, wspace=0.35, hspace=0.35
    )
    return figure, axes


def _law_label(fit: PowerLawFit, y_name: str, x_name: str) -> str:
    return f"{fit.law(y_name, x_name)}, r = {fit.r:.4f}"


def draw_fit(
    ax,
    x,
    y,
    fit: PowerLawFit,
    bootstrap: BootstrapResult | None = None,
    y_name: str = "L",
    x_name: str = "N",
    color: str = "C0",
    extend: float = 1.5,
) -> None:
    """Scatter + fitted line (+ bootstrap band) on log-log axes."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ax.scatter(x, y, color=color, s=18, zorder=3)
    grid = np.geomspace(x.min() / extend, x.max() * extend, 100)
    ax.plot(grid, fit.predict(grid), color=color, label=_law_label(fit, y_name, x_name))
    if bootstrap is not None:
        band = prediction_band(fit, bootstrap, grid)
        ax.fill_between(
            grid,
            band[:, 0],
            band[:, 1],
            color=color,
            alpha=0.2,
            label=f"{bootstrap.confidence:.0%} bootstrap band ({len(bootstrap.samples)} resamples)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.legend(fontsize=7)


def plot_scaling_vs_size(
    trials: pd.DataFrame,
    fits: dict[str, PowerLawFit],
    bootstraps: dict[str, BootstrapResult] | None = None,
    x_column: str = "params_total",
) -> Figure:
    """One log-log panel per metric (e.g. test loss/error, last scale and average) against N."""
    bootstraps = bootstraps or {}
    figure, axes = _new_figure(len(fits))
    for index, (ax, (metric, fit)) in enumerate(zip(axes, fits.items(), strict=True)):
        rows = trials.dropna(subset=[metric, x_column])
        draw_fit(ax, rows[x_column], rows[metric], fit, bootstraps.get(metric), metric, "N", f"C{index}")
        ax.set_xlabel(AXIS_LABELS.get(x_column, x_column))
        ax.set_ylabel(metric)
    return figure


def plot_training_curves(
    curves: pd.DataFrame,
    metric: str = "test_loss_last",
    x_column: str = "flops",
    size_column: str = "params_total",
    ax=None,
) -> Figure:
    """Every run's curve of `metric` against `x_column`, coloured by model size (log colour scale)."""
    figure, axes = (ax.figure, [ax]) if ax is not None else _new_figure(1)
    ax = axes[0]
    points = curves[curves["metric"] == metric].dropna(subset=[x_column, "value"])
    sizes = points.groupby("trial_key")[size_column].first()
    norm = colors.LogNorm(vmin=sizes.min(), vmax=max(sizes.max(), sizes.min() * 1.0001))
    colormap = colormaps["viridis"]
    for trial_key, run in points.groupby("trial_key"):
        run = run.sort_values(x_column)
        ax.plot(run[x_column], run["value"], color=colormap(norm(sizes[trial_key])), linewidth=1, alpha=0.8)
    figure.colorbar(ScalarMappable(norm=norm, cmap=colormap), ax=ax, label=size_column)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(AXIS_LABELS.get(x_column, x_column))
    ax.set_ylabel(metric)
    return figure


def plot_frontier(curves: pd.DataFrame, frontier_fit: FrontierFit, bootstrap: BootstrapResult | None = None) -> Figure:
    """Training curves coloured by size, the C_min Pareto frontier, and the law fitted on it."""
    figure, axes = _new_figure(1, panel_size=(7.0, 5.0))
    ax = axes[0]
    plot_training_curves(curves, frontier_fit.metric, frontier_fit.options.get("compute_column", "flops"), ax=ax)
    frontier = frontier_fit.frontier
    compute_column = frontier_fit.options.get("compute_column", "flops")
    draw_fit(
        ax,
        frontier[compute_column],
        frontier["value"],
        frontier_fit.law,
        bootstrap,
        frontier_fit.metric,
        "C",
        color="C3",
        extend=1.2,
    )
    ax.set_title(f"{frontier_fit.metric} vs compute: C_min frontier ({frontier_fit.n_trials_on_frontier} runs on it)")
    return figure


def plot_per_scale_loss(trials: pd.DataFrame, fits: dict[str, PowerLawFit], x_column: str = "params_total") -> Figure:
    """Per-scale test loss against N, one colour per scale, each with its own VAR-form line."""
    figure, axes = _new_figure(1, panel_size=(7.0, 5.0))
    ax = axes[0]
    colormap = colormaps["plasma"]
    for index, (column, fit) in enumerate(sorted(fits.items())):
        rows = trials.dropna(subset=[column, x_column])
        color = colormap(index / max(len(fits) - 1, 1) * 0.9)
        ax.scatter(rows[x_column], rows[column], color=color, s=12)
        grid = np.geomspace(rows[x_column].min(), rows[x_column].max(), 50)
        ax.plot(
            grid,
            fit.predict(grid),
            color=color,
            label=f"scale {column.rsplit('_', 1)[-1]}: alpha={fit.alpha:.3f}, r={fit.r:.3f}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(AXIS_LABELS.get(x_column, x_column))
    ax.set_ylabel("test loss per scale")
    ax.legend(fontsize=7, ncol=2)
    return figure


def plot_predicted_vs_actual(extrapolations: dict[str, ExtrapolationResult]) -> Figure:
    """Held-out points: the prediction of a fit made without them against what was measured."""
    figure, axes = _new_figure(1)
    ax = axes[0]
    all_values = []
    for index, (name, result) in enumerate(extrapolations.items()):
        ax.scatter(
            result.actual,
            result.predicted,
            color=f"C{index % 10}",
            label=f"{name}: {result.mean_absolute_relative_error:.1%} mean |rel. error|",
        )
        all_values += [*result.actual, *result.predicted]
    if all_values:
        low, high = min(all_values) * 0.95, max(all_values) * 1.05
        ax.plot([low, high], [low, high], color="grey", linestyle="--", label="predicted = actual")
    ax.set_xlabel("actual (held out)")
    ax.set_ylabel("predicted (fit without it)")
    ax.legend(fontsize=7)
    return figure


def plot_sample_laws(trials: pd.DataFrame, sample_fits: SampleFits, against: str = "N") -> Figure:
    """One panel per sample metric: its trials against N (or against final test loss, `against`
    "test_loss"), the VAR-form law with its bootstrap band, and the offset form dashed."""
    x_column = LOSS_COLUMN if against == "test_loss" else AGAINST[against][0]
    figure, axes = _new_figure(len(sample_fits.metrics))
    for ax, metric in zip(axes, sample_fits.metrics, strict=True):
        law = sample_fits.law(metric, against, "var")
        rows = trials[trials["trial_key"].isin(law.trial_keys)].dropna(subset=[metric, x_column])
        x, y = rows[x_column].to_numpy(float), fitted_values(metric, rows[metric])
        if law.fit is None:
            ax.scatter(x, y, color="C0", s=18)
            ax.set_title(f"{fitted_name(metric)}: not fitted", fontsize=8)
        else:
            draw_fit(ax, x, y, law.fit, law.bootstrap, y_name=fitted_name(metric), x_name=against[0].upper())
        if against != "test_loss":
            offset = sample_fits.law(metric, against, "offset")
            if offset.fit is not None and len(x):
                grid = np.geomspace(x.min() / 1.5, x.max() * 1.5, 100)
                ax.plot(grid, offset.fit.predict(grid), "--", color="C1", label=f"offset: {offset.fit.law('', 'x')}")
                ax.legend(fontsize=6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(AXIS_LABELS.get(x_column, x_column))
        ax.set_ylabel(fitted_name(metric))
    return figure
