"""The `model:` section of a study file: the model family, one size per depth."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator

from orchestration.study.config_values import check_config_values
from orchestration.study.fields import PositiveInteger, distinct, field_error, mapping_of
from orchestration.study.section import Section
from var_model.config import VARConfig, VQVAEConfig

# VARConfig fields the study derives (depths, the width rule, the tokenizer, the data).
STUDY_SET_MODEL_FIELDS = frozenset(
    {"depth", "width", "num_heads", "codebook_size", "latent_channels", "patch_nums", "num_classes"}
)


class ModelSpec(Section):
    depths: Annotated[tuple[PositiveInteger, ...], Field(min_length=1), distinct("depths")]
    # VAR: width C = 64 * depth and head dim 64 (the paper, section 4; docs/MODEL.md).
    width_per_depth: PositiveInteger = 64
    head_dim: PositiveInteger = 64
    patch_nums: Annotated[tuple[PositiveInteger, ...], Field(min_length=1)] | None = None  # None: the preset's
    num_classes: PositiveInteger | None = None  # classes the VAR conditions on; None: data.num_classes
    overrides: mapping_of("of VARConfig fields") = Field(default_factory=dict)  # extra VARConfig fields

    @field_validator("patch_nums")
    @classmethod
    def _increasing(cls, patch_nums: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if patch_nums is not None and list(patch_nums) != sorted(set(patch_nums)):
            raise field_error(f"must be strictly increasing, got {list(patch_nums)}")
        return patch_nums

    @field_validator("overrides")
    @classmethod
    def _var_config_fields(cls, overrides: dict) -> dict:
        clash = sorted(STUDY_SET_MODEL_FIELDS & set(overrides))
        if clash:
            raise field_error(f"{clash} are set by the study (depths, width rule, tokenizer); remove them")
        return check_config_values(VARConfig, overrides, excluded=STUDY_SET_MODEL_FIELDS)

    @model_validator(mode="after")
    def _whole_heads(self) -> "ModelSpec":
        if self.width_per_depth % self.head_dim:
            raise field_error(
                f"{self.width_per_depth} must be a multiple of model.head_dim ({self.head_dim}) so every "
                "width splits into whole heads",
                path="model.width_per_depth",
            )
        return self


def var_config(model: ModelSpec, tokenizer: VQVAEConfig, depth: int) -> VARConfig:
    """The VAR of `depth` in the family: width by the width rule, heads by the head dim, the
    tokenizer's codebook and scales, and the model's overrides."""
    width = model.width_per_depth * depth
    return VARConfig.for_vqvae(
        tokenizer,
        depth=depth,
        width=width,
        num_heads=width // model.head_dim,
        num_classes=model.num_classes,
        **model.overrides,
    )
