"""Config validation names the field, the value and what is allowed."""

from __future__ import annotations

import pytest

from var_model import ConfigError, VARConfig, VarScaleError, VQVAEConfig
from var_model.config import check_compatible


def test_var_config_defaults_follow_depth():
    config = VARConfig(depth=20)
    assert (config.width, config.num_heads, config.head_dim) == (1280, 20, 64)
    assert config.drop_path_rate == pytest.approx(0.1 * 20 / 24)
    assert config.init_adaln_gamma == 1e-3
    assert VARConfig(depth=24).init_adaln_gamma == 1e-4
    assert VARConfig(depth=30).init_adaln_gamma == 1e-5
    assert config.sequence_length == 680 and config.first_length == 1


def test_config_round_trips_through_dict():
    for config in (
        VARConfig(depth=8),
        VARConfig.debug(),
    ):
        assert VARConfig.from_dict(config.to_dict()) == config
    assert VQVAEConfig.from_dict(VQVAEConfig.debug().to_dict()) == VQVAEConfig.debug()
    with pytest.raises(ConfigError, match="unknown VARConfig field"):
        VARConfig.from_dict({"depth": 2, "tblr": 1e-4})


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(depth=0), "depth=0"),
        (dict(depth=4, num_heads=3), "num_heads=3 .*divisor of width 256"),
        (dict(depth=2, patch_nums=(1, 3, 2)), "strictly increasing"),
        (dict(depth=2, class_dropout=1.5), "class_dropout=1.5"),
    ],
)
def test_var_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message):
        VARConfig(**fields)


def test_vqvae_config_last_patch_num_must_be_latent_side():
    with pytest.raises(ConfigError, match=r"last scale must equal the latent side 4"):
        VQVAEConfig(image_size=32, channels=32, channel_multipliers=(1, 1, 2, 2), patch_nums=(1, 2, 8))
    with pytest.raises(ConfigError, match="image_size=30"):
        VQVAEConfig(image_size=30, channels=32, channel_multipliers=(1, 1, 2, 2), patch_nums=(1, 2, 4))
    with pytest.raises(ConfigError, match="channels=40"):
        VQVAEConfig(channels=40)


def test_incompatible_var_and_vqvae():
    with pytest.raises(ConfigError, match="codebook_size"):
        check_compatible(VQVAEConfig.debug(), VARConfig.debug(codebook_size=128))
    assert issubclass(ConfigError, VarScaleError) and issubclass(ConfigError, ValueError)
