"""The builtin feature network's pieces that the tokenizer stage relies on: its initial weights
come from its own generator (it trains in a thread beside the tokenizer, whose weights come from
the global RNG), and its blur augmentation."""

import pytest
import torch

from var_model.errors import ConfigError
from var_model.evaluation.config import FeatureNetworkConfig
from var_model.evaluation.features import FeatureNetwork, augment, blur

CONFIG = FeatureNetworkConfig(width=8, feature_dim=8, steps=1, batch_size=4)


def _initial_weights(seed: int) -> dict[str, torch.Tensor]:
    return FeatureNetwork.create(CONFIG, num_classes=3, generator=torch.Generator().manual_seed(seed)).state_dict()


def test_initial_weights_follow_their_own_generator_and_leave_the_global_rng_alone():
    torch.manual_seed(0)
    first = _initial_weights(seed=5)
    torch.manual_seed(123)  # another global state: the weights must not depend on it
    global_state = torch.get_rng_state()
    second = _initial_weights(seed=5)
    assert torch.equal(torch.get_rng_state(), global_state)  # nothing drawn from the global RNG
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert torch.equal(first["body.1.running_var"], torch.ones(8))  # real statistics, not empty memory
    other = _initial_weights(seed=6)
    assert not torch.equal(first["body.0.weight"], other["body.0.weight"])


def test_augment_blurs_the_chosen_images_only():
    image = torch.rand(6, 3, 8, 8) * 2 - 1
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(augment(image, 0.0, generator), image)
    blurred = augment(image, 1.0, generator)
    assert any(torch.allclose(blurred, blur(image, factor)) for factor in (2, 4))
    assert not torch.allclose(blurred, image)


def test_augment_probability_outside_zero_one_is_refused():
    with pytest.raises(ConfigError, match="evaluation.network.augment"):
        FeatureNetworkConfig(augment=1.5)
