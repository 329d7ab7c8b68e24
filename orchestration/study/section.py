"""What every section of a study file shares: the pydantic base class, the defaults read from
var_model's configs, and paths taken from the study's base directory."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

from var_model.tokenizer.stage import TokenizerStageConfig
from var_model.training.config import TrialConfig


def config_defaults(config_class: type) -> dict[str, Any]:
    """The defaults of a var_model config dataclass, by field name (each default is written once, there)."""
    return {
        item.name: item.default for item in dataclasses.fields(config_class) if item.default is not dataclasses.MISSING
    }


TRIAL_DEFAULTS = config_defaults(TrialConfig)
TOKENIZER_STAGE_DEFAULTS = config_defaults(TokenizerStageConfig)


class Section(BaseModel):
    """A section of a study file: frozen, an unknown key is an error, and defaults are validated
    like written values (so a rule's default is written as a plain value)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, values: Any) -> Any:
        # `key:` with no value (YAML null) means the key is not given: its default, or "required".
        return (
            {key: value for key, value in values.items() if value is not None} if isinstance(values, dict) else values
        )


def from_base_directory(path: str, info: ValidationInfo) -> str:
    """`path` made absolute from the study's base directory (parse_study's context; default: the working directory)."""
    base_directory = (info.context or {}).get("base_directory") or os.getcwd()
    return os.path.abspath(os.path.join(base_directory, os.path.expanduser(path)))
