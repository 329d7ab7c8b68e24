"""Extrapolation check: fit on the smaller models (or budgets) only, predict the held-out largest,
report the relative error. A law that cannot predict a held-out point is weak, whatever its r."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from analysis.errors import FitError
from analysis.inputs import as_float_arrays


@dataclass(frozen=True)
class ExtrapolationResult:
    fit: object  # the fit made without the held-out rows
    held_out_rows: np.ndarray
    held_out_x: np.ndarray  # the holdout column's values of the held-out rows
    actual: np.ndarray
    predicted: np.ndarray
    relative_error: np.ndarray  # (predicted - actual) / actual per held-out row
    mean_absolute_relative_error: float

    def to_dict(self) -> dict:
        return {
            "held_out_rows": self.held_out_rows.tolist(),
            "held_out_x": self.held_out_x.tolist(),
            "actual": self.actual.tolist(),
            "predicted": self.predicted.tolist(),
            "relative_error": self.relative_error.tolist(),
            "mean_absolute_relative_error": self.mean_absolute_relative_error,
        }


def extrapolation_check(
    fit_function: Callable,
    *columns,
    holdout_column: int = 0,
    holdout=None,
    **fit_options,
) -> ExtrapolationResult:
    """columns: the fit's inputs then its target, e.g. (N, loss) or (N, D, loss).
    holdout_column: which input decides "largest" (0: the first input, e.g. N).
    holdout: optional boolean mask of rows to hold out instead of the largest."""
    if len(columns) < 2:
        raise FitError("extrapolation_check needs at least one input column and the target column")
    names = tuple(f"column {index}" for index in range(len(columns)))
    arrays = as_float_arrays(names, *columns)
    if not 0 <= holdout_column < len(arrays) - 1:
        raise FitError(f"holdout_column must index an input (0..{len(arrays) - 2}), got {holdout_column}")
    if holdout is None:
        key = arrays[holdout_column]
        mask = key == np.nanmax(key)
    else:
        mask = np.asarray(holdout, dtype=bool)
        if mask.shape != arrays[0].shape:
            raise FitError(f"holdout mask has shape {mask.shape}, expected {arrays[0].shape}")
    if mask.all() or not mask.any():
        raise FitError("the holdout must leave some rows to fit and hold out at least one")
    fit = fit_function(*(array[~mask] for array in arrays), **fit_options)
    inputs, target = arrays[:-1], arrays[-1]
    predicted = np.atleast_1d(fit.predict(*(array[mask] for array in inputs)))
    actual = target[mask]
    relative_error = (predicted - actual) / actual
    return ExtrapolationResult(
        fit=fit,
        held_out_rows=np.flatnonzero(mask),
        held_out_x=arrays[holdout_column][mask],
        actual=actual,
        predicted=predicted,
        relative_error=relative_error,
        mean_absolute_relative_error=float(np.mean(np.abs(relative_error))),
    )
