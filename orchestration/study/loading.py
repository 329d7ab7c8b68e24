"""A study file as a StudySpec: read -> override -> validate; and the spec written back.

    spec = load_study("studies/smoke.yaml", overrides=["model.depths=[2,3]"])

The file is read by var_model.yaml_input (a SafeLoader: no object construction from tags; a
duplicate key, an alias bomb, a non-UTF-8 or binary file are one-line errors with
file:line:column). Every mistake of the file's values is reported at once, each with its field
path. The spec written back (`spec_to_yaml`) is saved as `<storage>/study.resolved.yaml` and on
the MLflow parent run, every default filled in, so a result always carries the exact study that
produced it; loading it gives back an equal spec.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from analysis.mlflow_schema import redact_uri
from orchestration.study.fields import config_error, describe
from orchestration.study.overrides import apply_overrides
from orchestration.study.spec import StudySpec
from var_model.errors import ConfigError
from var_model.yaml_input import read_yaml_file


def read_study_yaml(path: str) -> dict:
    if not Path(path).is_file():
        raise ConfigError(f"study file {path!r} does not exist or is not a file (e.g. studies/smoke.yaml)")
    mapping = read_yaml_file(path, what="study file")
    if not isinstance(mapping, dict):
        raise ConfigError(f"study file {path!r}: expected a mapping at the top level, got {describe(mapping)}")
    return mapping


def parse_study(mapping: dict, base_directory: str | None = None) -> StudySpec:
    """Validate a study mapping (already overridden); relative storage is taken from
    `base_directory` (default: the working directory)."""
    try:
        return StudySpec.model_validate(mapping, context={"base_directory": base_directory})
    except ValidationError as error:
        raise config_error(error, StudySpec) from None


def load_study(path: str, overrides: list[str] | None = None, base_directory: str | None = None) -> StudySpec:
    """Read, override (`--set key.sub=value`) and validate a study file."""
    return parse_study(apply_overrides(read_study_yaml(path), overrides or []), base_directory)


class _StudyDumper(yaml.SafeDumper):
    """Writes the spec's tuples as YAML lists (safe_dump knows no tuples)."""


_StudyDumper.add_representer(tuple, yaml.SafeDumper.represent_list)


def spec_to_mapping(spec: StudySpec) -> dict:
    """The study as plain data, every default filled in; never with the tracking URI's
    credentials (they belong in MLFLOW_TRACKING_* variables)."""
    return {**spec.model_dump(), "tracking_uri": redact_uri(spec.tracking_uri)}


def spec_to_yaml(spec: StudySpec) -> str:
    return yaml.dump(spec_to_mapping(spec), Dumper=_StudyDumper, sort_keys=False)
