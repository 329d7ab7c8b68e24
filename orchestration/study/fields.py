"""The field types of a study file and how their mistakes read.

Study files are user input: pydantic validates them (strict types, unknown keys refused, every
mistake of a file at once) and `config_error` renders its errors the house way, one line per
mistake: the field's dotted path (`model.depths[2]`), the value, and what is allowed.

Field types here differ from pydantic's defaults in two ways, both on purpose:
- integers are strict: `depth: true` or `depth: "2"` is a mistake, not 1 or 2;
- numbers accept a numeric string, because PyYAML follows YAML 1.1, where `1e12` (no dot) is a
  string, and users write it that way all the time; booleans and non-finite numbers are refused.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator, StrictInt, StrictStr, ValidationError
from pydantic_core import PydanticCustomError

from var_model.errors import ConfigError

# Tags of the two forms of a value that is one value or a mapping (a depth rule, budgets). They
# appear in pydantic's error locations but not in a study file, so paths leave them out.
ONE_VALUE_TAG = "(one value)"
BY_DEPTH_TAG = "(by depth)"
_FORM_TAGS = (ONE_VALUE_TAG, BY_DEPTH_TAG)


def describe(value: Any) -> str:
    """The value and its YAML-ish type, for error messages."""
    return f"{value!r} ({type(value).__name__})"


def field_error(message: str, path: str | None = None, suffix: str = "") -> PydanticCustomError:
    """An error for `config_error` to render. By default its line starts with the field's own
    path; `suffix` extends that path (`.key`, `[2]`); `path` replaces it (a cross-field check
    that names another field), and path="" means the message names its fields itself."""
    context = {"message": message, "suffix": suffix}
    if path is not None:
        context["path"] = path
    return PydanticCustomError("study_field", "{message}", context)


def finite_number(value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise field_error(f"expected a number, got {describe(value)}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise field_error(f"expected a number, got {describe(value)}")
    if not math.isfinite(value):
        raise field_error(f"expected a finite number, got {float(value)}")
    return float(value)


def _positive(value: float) -> float:
    if value <= 0:
        raise field_error(f"must be > 0, got {value}")
    return value


def _non_negative(value: float) -> float:
    if value < 0:
        raise field_error(f"must be >= 0.0, got {value}")
    return value


PositiveInteger = Annotated[StrictInt, Field(ge=1)]
NonNegativeInteger = Annotated[StrictInt, Field(ge=0)]
PositiveNumber = Annotated[float, BeforeValidator(finite_number), AfterValidator(_positive)]
NonNegativeNumber = Annotated[float, BeforeValidator(finite_number), AfterValidator(_non_negative)]
Text = Annotated[StrictStr, Field(min_length=1)]
# A mapping passed on to a var_model config whose own validation checks its keys and values.
Mapping = dict[str, Any]


def choice(options: tuple[str, ...]):
    """A string field that takes one of `options`."""

    def check(value: str) -> str:
        if value not in options:
            raise field_error(f"{value!r} is not allowed; choose one of {', '.join(options)}")
        return value

    return Annotated[Text, AfterValidator(check)]


def positive_integer_or(word: str):
    """A positive integer, or the word `word` (`auto`: decided per trial)."""

    def check(value: Any) -> int | str:
        if value == word:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise field_error(f"expected a positive integer or {word}, got {describe(value)}")
        return value

    return Annotated[int | str, PlainValidator(check)]


def boolean_or(word: str):
    """true, false, or the word `word` (`auto`: decided per device)."""

    def check(value: Any) -> bool | str:
        if value != word and not isinstance(value, bool):
            raise field_error(f"expected true, false or {word}, got {describe(value)}")
        return value

    return Annotated[bool | str, PlainValidator(check)]


def expect_mapping(what: str) -> BeforeValidator:
    """A mapping field whose type error says what the mapping holds ('of VARConfig fields')."""

    def check(value: Any) -> Any:
        if not isinstance(value, dict):
            raise field_error(f"expected a mapping {what}, got {describe(value)}")
        return value

    return BeforeValidator(check)


def distinct(what: str) -> AfterValidator:
    """A list whose items must differ (two equal depths or seeds would be the same trial)."""

    def check(values: tuple) -> tuple:
        if len(set(values)) != len(values):
            raise field_error(f"{what} must be distinct, got {list(values)}")
        return values

    return AfterValidator(check)


def mapping_of(what: str):
    """A mapping passed on as it is, whose type error says what it holds."""
    return Annotated[Mapping, expect_mapping(what)]


def _path(location: tuple) -> str:
    path = ""
    for part in location:
        if part in _FORM_TAGS:
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def _model_at(model: type, location: tuple):
    """The pydantic model class that holds the field at `location` (for its allowed keys)."""
    for part in location:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        model = field.annotation
    return model if hasattr(model, "model_fields") else None


def _line(error: dict, root: type) -> str:
    kind, location, value, context = error["type"], tuple(error["loc"]), error.get("input"), error.get("ctx") or {}
    if location and location[-1] == "[key]":  # a mapping key of the wrong type
        return f"{_path(location[:-2])} (key {describe(location[-2])}): {_message(kind, value, context)}"
    if kind == "study_field":
        path = context.get("path", _path(location) + context.get("suffix", ""))
        return f"{path}: {context['message']}" if path else context["message"]
    if kind == "value_error" and isinstance(context.get("error"), ConfigError):
        return str(context["error"])  # a var_model config's own message, which names its field
    path = _path(location)
    if kind == "extra_forbidden":
        section = _model_at(root, location[:-1])
        allowed = ", ".join(sorted(section.model_fields)) if section else "see docs/STUDIES.md"
        where = _path(location[:-1]) or "the study file"
        return f"{path}: unknown key {location[-1]!r} in {where} (allowed keys: {allowed})"
    return f"{path or 'study'}: {_message(kind, value, context)}"


def _message(kind: str, value: Any, context: dict) -> str:
    if kind == "missing":
        return "required field is missing"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected an integer, got {describe(value)}"
    if kind in ("string_type", "string_too_short"):
        return f"expected a non-empty string, got {describe(value)}"
    if kind in ("list_type", "tuple_type"):
        return f"expected a list, got {describe(value)}"
    if kind == "too_short":
        return "must not be empty"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {describe(value)}"
    if kind == "greater_than_equal":
        return f"must be >= {context['ge']}, got {value}"
    if kind == "value_error":
        return str(context.get("error", value))
    return f"{describe(value)}: {kind}"  # a pydantic check not translated above


def config_error(error: ValidationError, root: type) -> ConfigError:
    """All mistakes of a study file as one ConfigError, one line each (in the order of the spec's fields)."""
    errors = error.errors(include_url=False)
    # A list whose items are all wrong is also "too short" to pydantic: its items' errors say it.
    inside = {tuple(item["loc"][:-1]) for item in errors if item["loc"]}
    errors = [item for item in errors if not (item["type"] == "too_short" and tuple(item["loc"]) in inside)]
    return ConfigError("\n".join(_line(item, root) for item in errors))
