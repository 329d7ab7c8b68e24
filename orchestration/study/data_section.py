"""The `data:` section of a study file: var_model's DataConfig written out."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator

from orchestration.study.fields import describe, field_error
from var_model.data.config import DataConfig
from var_model.errors import ConfigError


def _data_config(value: Any) -> DataConfig:
    # DataConfig's own validation names the field as data.<name>.
    if isinstance(value, DataConfig):
        return value
    if not isinstance(value, dict):
        raise field_error(f"expected a mapping, got {describe(value)}")
    try:
        return DataConfig.from_dict(value)
    except TypeError as error:
        raise ConfigError(f"data: {error}") from None


DataSection = Annotated[DataConfig, PlainValidator(_data_config), PlainSerializer(DataConfig.to_dict)]
