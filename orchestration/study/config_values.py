"""Mappings in a study file that var_model config dataclasses take as they are (`data`,
`model.overrides`, `tokenizer.overrides`), checked against the dataclass's field types first.

The dataclasses check ranges (`mlp_ratio > 0`) and trust types, so a value of the wrong type
reached a comparison and ended as "'>' not supported between 'str' and 'int'" or a traceback.
Checking each key against its field's type hint here names the field instead
(`model.overrides.mlp_ratio: expected a number, got 'fast' (str)`); ranges stay the config's.
Numbers follow the study's rule (fields.py): a numeric string is a number (YAML 1.1 reads `1e-3`
as one), converted; an integer stays an integer, so a written value dumps back as it was.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from pydantic_core import PydanticCustomError

from orchestration.study.fields import describe, field_error, finite_number


def _check(value: Any, hint: Any) -> Any:
    """`value` if it has the type `hint` (a numeric string converted for a float); else field_error."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        others = [option for option in options if option is not type(None)]
        if len(others) != 1:
            return value  # a union of several types: the config checks it
        hint = others[0]
    if hint is bool:
        if not isinstance(value, bool):
            raise field_error(f"expected true or false, got {describe(value)}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise field_error(f"expected an integer, got {describe(value)}")
    elif hint is float:
        return value if isinstance(value, int) and not isinstance(value, bool) else finite_number(value)
    elif hint is str:
        if not isinstance(value, str):
            raise field_error(f"expected a string, got {describe(value)}")
    elif typing.get_origin(hint) is tuple and typing.get_args(hint) == (int, Ellipsis):
        if not isinstance(value, (list, tuple)) or any(
            isinstance(item, bool) or not isinstance(item, int) for item in value
        ):
            raise field_error(f"expected a list of integers, got {describe(value)}")
    return value


def check_config_values(config_class: type, values: dict, excluded: frozenset[str] = frozenset()) -> dict:
    """`values` with each key a field of `config_class` (not in `excluded`) and each value of its
    field's type; a field_error naming `<field path>.<key>` otherwise."""
    hints = typing.get_type_hints(config_class)
    allowed = sorted(item.name for item in dataclasses.fields(config_class) if item.name not in excluded)
    checked = {}
    for key, value in values.items():
        if key not in allowed:
            raise field_error(f"unknown key {key!r} (allowed keys: {', '.join(allowed)})", suffix=f".{key}")
        try:
            checked[key] = _check(value, hints[key])
        except PydanticCustomError as error:
            raise field_error(error.context["message"], suffix=f".{key}") from None  # the path gets the key
    return checked
