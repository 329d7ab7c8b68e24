"""VQVAEConfig.norm_groups: the conv nets' GroupNorm groups (32, LDM's, by default)."""

import pytest
import torch

from var_model import VQVAE, VQVAEConfig
from var_model.errors import ConfigError


def _group_counts(vqvae: VQVAE) -> set[int]:
    return {module.num_groups for module in vqvae.modules() if isinstance(module, torch.nn.GroupNorm)}


def test_every_group_norm_takes_the_configured_groups():
    assert _group_counts(VQVAE(VQVAEConfig.debug())) == {32}
    vqvae = VQVAE(VQVAEConfig.from_dict({**VQVAEConfig.debug().to_dict(), "norm_groups": 8}))
    assert _group_counts(vqvae) == {8}
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert vqvae.latent_to_image(vqvae.encode_latent(images)).shape == images.shape


def test_the_default_leaves_the_config_dict_and_so_every_tokenizer_key_unchanged():
    # the dict keys the tokenizer and its cache (tokenizer/stage.py): tokenizers trained before
    # the field existed keep their key
    assert "norm_groups" not in VQVAEConfig.debug().to_dict()
    changed = VQVAEConfig.from_dict({**VQVAEConfig.debug().to_dict(), "norm_groups": 8})
    assert changed.to_dict()["norm_groups"] == 8
    assert VQVAEConfig.from_dict(changed.to_dict()) == changed


@pytest.mark.parametrize(("groups", "channels", "field"), [(0, 32, "norm_groups"), (12, 32, "channels")])
def test_groups_that_do_not_divide_the_channels_are_refused(groups, channels, field):
    with pytest.raises(ConfigError, match=field):
        VQVAEConfig.from_dict({**VQVAEConfig.debug().to_dict(), "channels": channels, "norm_groups": groups})
