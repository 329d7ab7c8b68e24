"""`--set key.sub=value` overrides applied to a mapping (a study, a trial config) before it is validated.

The value is read as YAML by the study files' reader (var_model.yaml_input: safe, duplicate keys
and alias bombs refused), so `--set model.depths=[2,4]` gives a list of ints and
`--set recipe.base_lr=1.0e-4` a float, exactly as if it had been written in the file. The
overridden mapping is then parsed strictly, so a misspelled key is still an error. One dialect
for every command: `varscale train` (trial fields) and the study commands (study fields).
"""

from __future__ import annotations

import copy

from var_model.errors import ConfigError
from var_model.yaml_input import YamlInputError, load_yaml

STUDY_EXAMPLE = "model.depths=[2,4]"


def parse_override(text: str, example: str = STUDY_EXAMPLE) -> tuple[list[str], object]:
    """(key parts, value) of one override; `example` is the override a malformed one's error shows."""
    key, separator, value_text = text.partition("=")
    if not separator or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY.SUB=VALUE, e.g. --set {example}")
    parts = key.strip().split(".")
    if any(not part for part in parts):
        raise ConfigError(f"--set {text!r}: empty part in the key {key!r}")
    try:
        value = load_yaml(value_text, source="value") if value_text.strip() else None
    except YamlInputError as error:
        where = f"column {error.column}: " if error.column is not None else ""
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({where}{error.problem})") from None
    return parts, value


def apply_overrides(mapping: dict, overrides: list[str], example: str = STUDY_EXAMPLE) -> dict:
    """A copy of `mapping` with each override applied in order (later ones win)."""
    result = copy.deepcopy(mapping)
    for text in overrides:
        parts, value = parse_override(text, example)
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                path = ".".join(parts[: depth + 1])
                raise ConfigError(f"--set {text!r}: {path} is {child!r}, not a mapping, so it has no sub-keys")
            node = child
        node[parts[-1]] = value
    return result
