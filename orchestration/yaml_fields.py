"""Strict reading of one YAML mapping: typed fields, dotted paths in errors, unknown keys refused.

Study files are user input, so every mistake becomes a `ConfigError` that names the field by
its dotted path (`model.depths[2]`), shows the value, and says what is allowed. A `Section`
remembers which keys were asked for, so `finish()` can refuse any key nobody asked for (a typo
such as `widht_per_depth` must not be silently ignored).
"""

from __future__ import annotations

import math
from typing import Any

from var_model.errors import ConfigError


def describe(value: Any) -> str:
    """The value and its YAML-ish type, for error messages."""
    return f"{value!r} ({type(value).__name__})"


def as_int(value: Any, path: str, minimum: int | None = None) -> int:
    # bool is a subclass of int in Python; `depth: true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path}: expected an integer, got {describe(value)}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{path}: must be >= {minimum}, got {value}")
    return value


def as_float(value: Any, path: str, positive: bool = False, minimum: float | None = None) -> float:
    # PyYAML follows YAML 1.1, where `1e12` (no dot) is a string, not a float; users write it
    # that way all the time, so a string that parses as a number is accepted for float fields.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{path}: expected a number, got {describe(value)}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path}: expected a number, got {describe(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{path}: expected a finite number, got {value}")
    if positive and value <= 0:
        raise ConfigError(f"{path}: must be > 0, got {value}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{path}: must be >= {minimum}, got {value}")
    return value


def as_str(value: Any, path: str, choices: tuple[str, ...] | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: expected a non-empty string, got {describe(value)}")
    if choices is not None and value not in choices:
        raise ConfigError(f"{path}: {value!r} is not allowed; choose one of {', '.join(choices)}")
    return value


def as_list(value: Any, path: str, allow_empty: bool = False) -> list:
    if not isinstance(value, list):
        raise ConfigError(f"{path}: expected a list, got {describe(value)}")
    if not value and not allow_empty:
        raise ConfigError(f"{path}: must not be empty")
    return value


class Section:
    """One YAML mapping at `path`; read fields with the typed getters, then call `finish()`."""

    def __init__(self, mapping: Any, path: str):
        if not isinstance(mapping, dict):
            raise ConfigError(f"{path or 'study'}: expected a mapping, got {describe(mapping)}")
        for key in mapping:
            if not isinstance(key, str):
                raise ConfigError(f"{self._join(path, str(key))}: keys must be strings, got {describe(key)}")
        self.mapping = mapping
        self.path = path
        self._known: list[str] = []

    @staticmethod
    def _join(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def field_path(self, key: str) -> str:
        return self._join(self.path, key)

    def has(self, key: str) -> bool:
        self._known.append(key)
        return key in self.mapping and self.mapping[key] is not None

    def raw(self, key: str, default: Any = None, required: bool = False) -> Any:
        self._known.append(key)
        if key not in self.mapping or self.mapping[key] is None:
            if required:
                raise ConfigError(f"{self.field_path(key)}: required field is missing")
            return default
        return self.mapping[key]

    def integer(self, key: str, default: int | None = None, required: bool = False, minimum: int | None = None):
        value = self.raw(key, default, required)
        return None if value is None else as_int(value, self.field_path(key), minimum)

    def number(self, key: str, default: float | None = None, required: bool = False,
               positive: bool = False, minimum: float | None = None):
        value = self.raw(key, default, required)
        return None if value is None else as_float(value, self.field_path(key), positive, minimum)

    def string(self, key: str, default: str | None = None, required: bool = False,
               choices: tuple[str, ...] | None = None):
        value = self.raw(key, default, required)
        return None if value is None else as_str(value, self.field_path(key), choices)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.field_path(key)}: expected true or false, got {describe(value)}")
        return value

    def section(self, key: str, required: bool = True) -> "Section | None":
        value = self.raw(key, None, required)
        return None if value is None else Section(value, self.field_path(key))

    def finish(self) -> None:
        unknown = [key for key in self.mapping if key not in self._known]
        if unknown:
            allowed = ", ".join(sorted(set(self._known)))
            raise ConfigError(
                f"{self.field_path(unknown[0])}: unknown key {unknown[0]!r} in "
                f"{self.path or 'the study file'} (allowed keys: {allowed})"
            )
