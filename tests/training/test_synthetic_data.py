import numpy as np
import pytest

from var_model.data import SHAPE_NAMES, DataConfig, ImageSource, generate_synthetic_images, images_to_model_input
from var_model.errors import ConfigError, DataError


def test_synthetic_images_are_deterministic_balanced_and_uint8():
    images, labels = generate_synthetic_images(120, 32, 12, seed=5, split="train")
    again, again_labels = generate_synthetic_images(120, 32, 12, seed=5, split="train")
    assert images.shape == (120, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again) and np.array_equal(labels, again_labels)
    assert np.bincount(labels, minlength=12).tolist() == [10] * 12
    other, _ = generate_synthetic_images(120, 32, 12, seed=6, split="train")
    assert not np.array_equal(images, other)


def test_pixel_noise_changes_only_the_noise():
    quiet, labels = generate_synthetic_images(24, 32, 12, seed=5, split="train", pixel_noise=0.0)
    noisy, noisy_labels = generate_synthetic_images(24, 32, 12, seed=5, split="train", pixel_noise=0.1)
    assert np.array_equal(labels, noisy_labels)
    difference = noisy.astype(np.float32) - quiet.astype(np.float32)
    assert 0.5 < np.abs(difference).mean() < 20  # same shapes and colours, plus noise


def test_test_split_does_not_depend_on_the_training_split():
    small = ImageSource(DataConfig(train_images=50, test_images=30, num_classes=5))
    large = ImageSource(DataConfig(train_images=500, test_images=30, num_classes=5))
    assert np.array_equal(small.arrays("test")[0], large.arrays("test")[0])
    assert not np.array_equal(small.arrays("test")[0], small.arrays("train")[0][:30])


def test_images_of_one_class_differ_and_classes_differ_on_average():
    images, labels = generate_synthetic_images(48, 64, 12, seed=0, split="test")
    assert images.shape[1:] == (64, 64, 3)
    discs = images[labels == 0].astype(np.float32)
    # random position, colour and background: no two images of a class are alike
    assert np.abs(discs[0] - discs[1]).mean() > 10
    # every pixel value range is used (not a constant image)
    assert images.std() > 40


def test_iterate_yields_whole_split_in_order_and_model_input_range():
    source = ImageSource(DataConfig(train_images=70, test_images=10, num_classes=3))
    batches = list(source.iterate("train", batch_size=32))
    assert [len(labels) for _, labels in batches] == [32, 32, 6]
    stacked = np.concatenate([images for images, _ in batches])
    assert np.array_equal(stacked, source.arrays("train")[0])
    tensor = images_to_model_input(stacked[:2])
    assert tensor.shape == (2, 3, 32, 32) and tensor.min() >= -1 and tensor.max() <= 1


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"kind": "lmdb"}, "data.kind"),
        ({"resolution": 30}, "data.resolution"),
        ({"num_classes": len(SHAPE_NAMES) + 1}, "data.num_classes"),
        ({"crops_per_image": 2}, "crops_per_image"),
        ({"kind": "image_folder"}, "data.root"),
        ({"train_images": 0}, "data.train_images"),
        ({"pixel_noise": 0.9}, "data.pixel_noise"),
    ],
)
def test_bad_data_config_names_the_field(fields, fragment):
    with pytest.raises(ConfigError, match=fragment):
        DataConfig(**fields)


def test_unknown_data_key_and_bad_split_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown data keys"):
        DataConfig.from_dict({"resolutoin": 32})
    with pytest.raises(ConfigError, match="split"):
        ImageSource(DataConfig(train_images=4, test_images=4)).num_images("validation")
    with pytest.raises(DataError, match="uint8"):
        images_to_model_input(np.zeros((1, 8, 8, 3), dtype=np.float32))
