"""The `tokenizer:` section of a study file: which tokenizer the study trains or loads."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from orchestration.study.config_values import check_config_values
from orchestration.study.fields import PositiveInteger, Text, choice, field_error, mapping_of
from orchestration.study.geometry import TOKENIZER_PRESETS
from orchestration.study.section import TOKENIZER_STAGE_DEFAULTS, Section
from var_model.config import VQVAEConfig
from var_model.errors import ConfigError
from var_model.tokenizer.stage import TOKENIZER_KINDS
from var_model.tokenizer.training import TokenizerTrainingConfig


class TokenizerSpec(Section):
    kind: choice(TOKENIZER_KINDS)
    # Which VQVAEConfig to start from: debug (tiny, CPU) or official (VAR's); official weights
    # need the official architecture, so load_official defaults to it.
    preset: choice(TOKENIZER_PRESETS) = None
    overrides: mapping_of("of VQVAEConfig fields") = Field(default_factory=dict)  # changed from the preset
    training: mapping_of("of training fields") = Field(default_factory=dict)  # TokenizerTrainingConfig fields
    vqvae_path: Text | None = None  # kind load_official: the released vae_ch160v4096z32.pth
    encode_batch_size: PositiveInteger = TOKENIZER_STAGE_DEFAULTS["encode_batch_size"]

    @model_validator(mode="before")
    @classmethod
    def _preset_follows_kind(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("preset") is None:
            return {**values, "preset": "official" if values.get("kind") == "load_official" else "debug"}
        return values

    @field_validator("overrides")
    @classmethod
    def _vqvae_fields(cls, overrides: dict) -> dict:
        return check_config_values(VQVAEConfig, overrides)

    @field_validator("training")
    @classmethod
    def _training_fields(cls, training: dict) -> dict:
        training = check_config_values(TokenizerTrainingConfig, training)
        try:
            TokenizerTrainingConfig(**training)
        except ConfigError as error:
            raise field_error(str(error)) from None
        return training

    @model_validator(mode="after")
    def _official_weights(self) -> "TokenizerSpec":
        if self.kind == "load_official" and not self.vqvae_path:
            raise field_error("required when tokenizer.kind is load_official", path="tokenizer.vqvae_path")
        if self.kind == "load_official" and self.preset != "official":
            raise field_error(
                f"official weights need the official architecture, got {self.preset!r}", path="tokenizer.preset"
            )
        return self
