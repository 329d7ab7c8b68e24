"""Seeded bootstrap over trials: resample RUNS (not checkpoints) with replacement, refit, and report
percentile intervals for every named parameter, every derived quantity and every prediction.

Why runs: checkpoints of one run are not independent draws; resampling them understates the spread.
`groups` names the run each row belongs to (default: each row is its own run).

`bootstrap_fit` works with any fit function whose result has `parameters()` and `predict(...)`.
`bootstrap_chinchilla` is the fast path for the Chinchilla fit: all resamples are one batched
L-BFGS whose per-problem weights are the resample counts, started from the full-data optimum.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Callable

import numpy as np
import pandas as pd

from analysis.chinchilla import ChinchillaFit, chinchilla_objective, fit_chinchilla, prepare_chinchilla_inputs
from analysis.errors import AnalysisError, FitError
from analysis.lbfgs import batched_lbfgs
from analysis.power_law import PowerLawFit


@dataclass(frozen=True)
class BootstrapResult:
    """estimate: the full-data fit's parameters (and derived quantities).
    samples: one row per successful resample, one column per parameter / derived quantity.
    intervals: name -> (low, high) percentile interval at `confidence`.
    prediction_samples: (resamples, points) predictions at `predict_at`; prediction_intervals: (points, 2)."""

    estimate: dict[str, float]
    samples: pd.DataFrame
    intervals: dict[str, tuple[float, float]]
    confidence: float
    n_resamples: int
    n_failed: int
    seed: int
    prediction_samples: np.ndarray | None = None
    prediction_intervals: np.ndarray | None = None
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "estimate": self.estimate,
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
            "n_failed": self.n_failed,
            "seed": self.seed,
            "prediction_intervals": None if self.prediction_intervals is None else self.prediction_intervals.tolist(),
            "options": self.options,
        }


def _validate(n_resamples: int, confidence: float) -> None:
    if not (isinstance(n_resamples, (int, np.integer)) and n_resamples >= 2):
        raise FitError(f"n_resamples must be an integer >= 2, got {n_resamples!r}")
    if not 0 < confidence < 1:
        raise FitError(f"confidence must lie in (0, 1), got {confidence!r}")


def percentile_intervals(samples: pd.DataFrame, confidence: float) -> dict[str, tuple[float, float]]:
    tail = 100 * (1 - confidence) / 2
    return {
        name: (float(np.nanpercentile(column, tail)), float(np.nanpercentile(column, 100 - tail)))
        for name, column in samples.items()
    }


def _prediction_intervals(prediction_samples, confidence):
    if prediction_samples is None:
        return None
    tail = 100 * (1 - confidence) / 2
    return np.stack(
        [np.nanpercentile(prediction_samples, tail, axis=0), np.nanpercentile(prediction_samples, 100 - tail, axis=0)],
        axis=1,
    )


def _group_rows(groups, n_rows: int) -> list[np.ndarray]:
    if groups is None:
        return [np.array([row]) for row in range(n_rows)]
    labels = np.asarray(groups)
    if len(labels) != n_rows:
        raise FitError(f"groups has {len(labels)} labels for {n_rows} rows; give one label per row")
    _, inverse = np.unique(labels, return_inverse=True)
    return [np.flatnonzero(inverse == group) for group in range(inverse.max() + 1)]


def bootstrap_fit(
    fit_function: Callable,
    *columns,
    groups=None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    predict_at: tuple | None = None,
    derived: Callable[[object], dict[str, float]] | None = None,
    **fit_options,
) -> BootstrapResult:
    """Refits `fit_function(*columns, **fit_options)` on resampled runs.

    columns: equal-length arrays, or a single DataFrame (rows resampled together).
    groups: run label per row (array, or a column name when columns is a DataFrame).
    predict_at: arguments for `result.predict(*predict_at)`; its bootstrap spread is reported.
    derived: extra quantities from each fit (e.g. an extrapolated loss), bootstrapped too.
    Resamples whose fit raises an AnalysisError are counted in n_failed, not hidden."""
    _validate(n_resamples, confidence)
    is_frame = len(columns) == 1 and isinstance(columns[0], pd.DataFrame)
    if is_frame:
        frame = columns[0]
        n_rows = len(frame)
        labels = frame[groups].to_numpy() if isinstance(groups, str) else groups
    else:
        arrays = [np.asarray(column) for column in columns]
        n_rows = len(arrays[0])
        labels = groups
    group_rows = _group_rows(labels, n_rows)

    def fit_and_collect(selected_columns):
        result = fit_function(*selected_columns, **fit_options)
        values = dict(result.parameters())
        if derived is not None:
            values.update(derived(result))
        prediction = None if predict_at is None else np.atleast_1d(result.predict(*predict_at))
        return values, prediction

    full_columns = (frame,) if is_frame else arrays
    estimate, _ = fit_and_collect(full_columns)

    def fit_resample(chosen):
        rows = np.concatenate([group_rows[group] for group in chosen])
        selected = (frame.iloc[rows].reset_index(drop=True),) if is_frame else [array[rows] for array in arrays]
        return fit_and_collect(selected)

    records, predictions, n_failed = _resample(fit_resample, len(group_rows), n_resamples, seed)
    options = {
        "fit_function": getattr(fit_function, "__name__", str(fit_function)),
        "resample_unit": "run" if groups is not None else "row",
        **fit_options,
    }
    return _result(estimate, records, predictions, confidence, n_resamples, n_failed, seed, options)


def bootstrap_chinchilla(
    N,
    D,
    loss,
    groups=None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    fit: ChinchillaFit | None = None,
    predict_at: tuple | None = None,
    derived: Callable[[ChinchillaFit], dict[str, float]] | None = None,
    huber_delta: float = 1e-3,
) -> BootstrapResult:
    """Bootstrap of the Chinchilla fit. Each resample is a weight vector (how often each run was
    drawn) and starts from the full-data optimum `fit` (fitted here from the full grid if None);
    all resamples are solved together by the batched L-BFGS."""
    _validate(n_resamples, confidence)
    log_N, log_D, log_loss = prepare_chinchilla_inputs(N, D, loss)
    fit = fit or fit_chinchilla(N, D, loss, huber_delta=huber_delta)
    group_rows = _group_rows(groups, len(log_loss))
    generator = np.random.default_rng(seed)
    chosen_RG = generator.integers(0, len(group_rows), size=(n_resamples, len(group_rows)))
    group_counts_RG = np.stack([np.bincount(row, minlength=len(group_rows)) for row in chosen_RG])
    weights_RN = np.zeros((n_resamples, len(log_loss)))
    for group, rows in enumerate(group_rows):
        weights_RN[:, rows] = group_counts_RG[:, group, None]

    def objective(x_SP, rows):
        return chinchilla_objective(x_SP, log_N, log_D, log_loss, huber_delta, weights_RN[rows])

    starts_RP = np.tile(fit.log_parameters(), (n_resamples, 1))
    batch = batched_lbfgs(objective, starts_RP)
    records, predictions = [], []
    ok = batch.converged_S & np.isfinite(batch.f_S)
    for x in batch.x_SP[ok]:
        a, b, e, alpha, beta = x
        resample_fit = _parameters_only_fit(fit, a, b, e, alpha, beta)
        values = resample_fit.parameters()
        if derived is not None:
            values.update(derived(resample_fit))
        records.append(values)
        if predict_at is not None:
            predictions.append(np.atleast_1d(resample_fit.predict(*predict_at)))
    if not records:
        raise FitError(f"no bootstrap resample of the Chinchilla fit converged (of {n_resamples})")
    estimate = dict(fit.parameters())
    if derived is not None:
        estimate.update(derived(fit))
    options = {
        "fit_function": "fit_chinchilla",
        "huber_delta": huber_delta,
        "resample_unit": "run" if groups is not None else "row",
        "start": "full-data optimum",
    }
    return _result(estimate, records, predictions, confidence, n_resamples, int((~ok).sum()), seed, options)


def _result(estimate, records, predictions, confidence, n_resamples, n_failed, seed, options) -> BootstrapResult:
    """The resamples' parameter records (and predictions) as a BootstrapResult with intervals."""
    samples = pd.DataFrame.from_records(records)
    prediction_samples = np.stack(predictions) if predictions else None
    return BootstrapResult(
        estimate=estimate,
        samples=samples,
        intervals=percentile_intervals(samples, confidence),
        confidence=confidence,
        n_resamples=n_resamples,
        n_failed=n_failed,
        seed=seed,
        prediction_samples=prediction_samples,
        prediction_intervals=_prediction_intervals(prediction_samples, confidence),
        options=options,
    )


def _parameters_only_fit(template: ChinchillaFit, a, b, e, alpha, beta) -> ChinchillaFit:
    return ChinchillaFit(
        A=float(np.exp(a)),
        B=float(np.exp(b)),
        E=float(np.exp(e)),
        alpha=float(alpha),
        beta=float(beta),
        objective=float("nan"),
        n_points=template.n_points,
        converged=True,
        status="bootstrap resample",
        n_starts=1,
        n_starts_converged=1,
        n_starts_at_best=1,
        best_start=tuple(template.log_parameters()),
        options=template.options,
    )


def prediction_band(fit, bootstrap: BootstrapResult, *inputs) -> np.ndarray:
    """(points, 2) percentile band of fit.predict(*inputs) over the bootstrap's resampled parameters.

    Works for any frozen-dataclass fit whose `parameters()` names are its fields (PowerLawFit,
    ChinchillaFit): each sample row is substituted into a copy of the fit."""
    field_names = {item.name for item in fields(fit)}
    columns = [name for name in bootstrap.samples.columns if name in field_names]
    if isinstance(fit, PowerLawFit):
        # PowerLawFit.predict's arithmetic for all samples at once (one row per sample): the same
        # numbers, without a dataclass copy per sample per figure
        return _prediction_intervals(
            _power_law_predictions(fit, bootstrap.samples[columns], *inputs), bootstrap.confidence
        )
    predictions = np.stack(
        [
            np.atleast_1d(replace(fit, **{name: float(row[name]) for name in columns}).predict(*inputs))
            for _, row in bootstrap.samples[columns].iterrows()
        ]
    )
    return _prediction_intervals(predictions, bootstrap.confidence)


def _power_law_predictions(fit: PowerLawFit, samples: pd.DataFrame, x) -> np.ndarray:
    """(samples, points): fit.predict(x) with each sample row's parameters substituted."""
    value = {
        name: np.full(len(samples), float(getattr(fit, name)))
        for name in ("alpha", "beta", "x0", "E")
        if getattr(fit, name) is not None
    }
    value.update({name: samples[name].to_numpy(dtype=float) for name in samples.columns if name in value})
    scaled = (np.asarray(x, dtype=float) / fit.x_unit_scale)[None, :]
    if fit.form == "var":
        return value["E"][:, None] + (value["beta"][:, None] * scaled) ** value["alpha"][:, None]
    return value["E"][:, None] + (value["x0"][:, None] / scaled) ** value["alpha"][:, None]


def _resample(fit_resample, n_groups: int, n_resamples: int, seed: int):
    """(records, predictions, n_failed): `fit_resample(chosen)` on n_resamples draws of n_groups
    runs with replacement, seeded. A resample whose fit raises an AnalysisError (e.g. a single
    distinct x, or a frontier of one point) is counted in n_failed, not hidden."""
    generator = np.random.default_rng(seed)
    records, predictions, n_failed = [], [], 0
    for _ in range(n_resamples):
        chosen = generator.integers(0, n_groups, size=n_groups)
        try:
            values, prediction = fit_resample(chosen)
        except AnalysisError:
            n_failed += 1
            continue
        records.append(values)
        if prediction is not None:
            predictions.append(prediction)
    if not records:
        raise FitError(f"every one of {n_resamples} bootstrap resamples failed to fit")
    return records, predictions, n_failed
