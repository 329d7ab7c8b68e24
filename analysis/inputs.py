"""Validation of the arrays handed to fits: every fit goes through here so bad input fails the same
way, naming what is wrong, instead of producing NaN parameters."""

from __future__ import annotations

import numpy as np

from analysis.errors import DataError, FitError


def as_float_arrays(names: tuple[str, ...], *values) -> tuple[np.ndarray, ...]:
    """Converts each input to a 1-D float array and checks that they have one common length."""
    arrays = []
    for name, value in zip(names, values, strict=True):
        try:
            array = np.asarray(value, dtype=float)
        except (TypeError, ValueError) as error:
            raise DataError(f"{name} must be numeric, got {type(value).__name__}: {error}") from error
        if array.ndim == 0:
            array = array.reshape(1)
        if array.ndim != 1:
            raise DataError(f"{name} must be one-dimensional, got shape {array.shape}")
        arrays.append(array)
    lengths = {name: len(array) for name, array in zip(names, arrays, strict=True)}
    if len(set(lengths.values())) > 1:
        raise DataError(f"inputs must have one common length, got lengths {lengths}")
    return tuple(arrays)


def reject_nan_rows(names: tuple[str, ...], arrays: tuple[np.ndarray, ...]) -> None:
    """NaN or infinite rows are an error, not something to drop silently: the caller decides."""
    for name, array in zip(names, arrays, strict=True):
        bad = ~np.isfinite(array)
        if bad.any():
            rows = np.flatnonzero(bad)[:10].tolist()
            raise DataError(
                f"{name} has {int(bad.sum())} NaN or infinite value(s) at rows {rows}; "
                "drop or fix those rows before fitting"
            )


def require_positive(names: tuple[str, ...], arrays: tuple[np.ndarray, ...], why: str) -> None:
    for name, array in zip(names, arrays, strict=True):
        bad = array <= 0
        if bad.any():
            rows = np.flatnonzero(bad)[:10].tolist()
            raise DataError(
                f"{name} must be > 0 for {why}; {int(bad.sum())} value(s) are not, at rows {rows} "
                f"(e.g. {array[bad][0]!r})"
            )


def require_points(n_points: int, n_parameters: int, fit_name: str) -> None:
    if n_points < n_parameters:
        raise FitError(
            f"{fit_name} has {n_parameters} free parameters but got only {n_points} data point(s); "
            f"give at least {n_parameters}"
        )


def clean_inputs(names: tuple[str, ...], *values, positive: bool, n_parameters: int, fit_name: str):
    """The common gate: same length, no NaN, positive where logs are taken, enough points."""
    arrays = as_float_arrays(names, *values)
    reject_nan_rows(names, arrays)
    if positive:
        require_positive(names, arrays, f"the log-space {fit_name}")
    require_points(len(arrays[0]), n_parameters, fit_name)
    return arrays
