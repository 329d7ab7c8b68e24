"""The project's small error hierarchy.

Every error raised for bad user input is a `VarScaleError`, so callers (the CLI, the
orchestration layer) can catch one type and print its message. The message always names
what is wrong and what is allowed. Most subclasses are also `ValueError`s, because that is
what they are: a value that cannot be used.
"""

from __future__ import annotations


class VarScaleError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(VarScaleError, ValueError):
    """A configuration field has a value that is not allowed (the message names the field)."""


class CheckpointError(VarScaleError, ValueError):
    """A checkpoint is missing keys, has unexpected keys, or has mis-shaped tensors."""


class UnreadableCheckpointError(CheckpointError):
    """A checkpoint's bytes cannot be read back (truncated or corrupted on disk), unlike one
    that reads but is refused: a trial falls back to its previous checkpoint on this one."""


class CheckpointWarning(UserWarning):
    """A trial could not use a checkpoint it found (it fell back to an older one or restarted)."""


class DataError(VarScaleError, ValueError):
    """Input data (images, labels, token indices) has the wrong shape, range or type."""


class TrialError(VarScaleError, RuntimeError):
    """A training trial cannot run or cannot continue (not caused by divergence)."""


class DivergenceError(TrialError):
    """Training diverged: the loss became NaN/inf or exceeded the divergence threshold."""
