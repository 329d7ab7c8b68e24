"""The analysis layer's errors: one base class so callers can catch everything we raise.

`analysis` cannot import `var_model.errors` (layer rule), so it keeps its own small hierarchy.
"""


class AnalysisError(Exception):
    """Base class of every error raised on purpose by `analysis`."""


class DataError(AnalysisError, ValueError):
    """The input data cannot be used: NaN rows, non-positive values in a log fit, ragged arrays."""


class FitError(AnalysisError):
    """A fit cannot be made or did not produce a usable result (e.g. fewer points than parameters)."""


class StudyNotFoundError(AnalysisError, LookupError):
    """No MLflow experiment carries the requested study name."""
