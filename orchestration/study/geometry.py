"""The tokenizer's geometry: its VQVAEConfig from the study's preset, overrides, resolution and
scales, and the checks that tie the VAR's scales to it (the last scale is the latent side).

It takes plain values, not the spec, so the spec's validation can call it."""

from __future__ import annotations

import dataclasses

from var_model.config import VQVAEConfig
from var_model.errors import ConfigError

TOKENIZER_PRESETS = ("debug", "official")


def vqvae_config(preset: str, overrides: dict, resolution: int, patch_nums: tuple[int, ...] | None) -> VQVAEConfig:
    """The tokenizer architecture: the preset, its overrides, the data resolution and scales."""
    base = VQVAEConfig.debug() if preset == "debug" else VQVAEConfig()
    values = base.to_dict()
    # the fields, not to_dict's keys: to_dict leaves out a norm_groups at its default
    allowed = {field.name for field in dataclasses.fields(VQVAEConfig)}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ConfigError(f"tokenizer.overrides: unknown VQVAEConfig field(s) {unknown}; allowed: {sorted(allowed)}")
    values.update(overrides)
    values["image_size"] = resolution
    downsample = 2 ** (len(values["channel_multipliers"]) - 1)
    latent_size = resolution // downsample
    if patch_nums is not None:
        if patch_nums[-1] != latent_size:
            raise ConfigError(
                f"model.patch_nums: {list(patch_nums)} must end at the latent side {latent_size} "
                f"(data.resolution {resolution} / tokenizer downsampling {downsample})"
            )
        values["patch_nums"] = list(patch_nums)
    elif values["patch_nums"][-1] != latent_size:
        raise ConfigError(
            f"model.patch_nums: not given, and the tokenizer preset's {values['patch_nums']} does not end "
            f"at the latent side {latent_size} (data.resolution {resolution}); set model.patch_nums"
        )
    return VQVAEConfig.from_dict(values)
