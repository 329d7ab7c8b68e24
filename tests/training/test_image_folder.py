import numpy as np
import pytest
from PIL import Image

from var_model.data import DataConfig, ImageSource
from var_model.errors import DataError


def _write_folder(root, classes=("cat", "dog"), per_class=3, size=(40, 30)):
    generator = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in classes:
            directory = root / split / name
            directory.mkdir(parents=True)
            for index in range(per_class):
                pixels = generator.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(directory / f"{index}.png")


def test_folder_images_are_resized_cropped_and_labelled(tmp_path):
    _write_folder(tmp_path)
    source = ImageSource(DataConfig(kind="image_folder", root=str(tmp_path), resolution=16, crops_per_image=2))
    assert source.class_names == ["cat", "dog"] and source.num_images("train") == 6
    images, labels = next(source.iterate("train", batch_size=10))
    assert images.shape == (6, 16, 16, 3) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    # random crops are seeded by (seed, image, crop): reproducible, different per crop
    again, _ = next(source.iterate("train", batch_size=10))
    other_crop, _ = next(source.iterate("train", batch_size=10, crop_index=1))
    assert np.array_equal(images, again) and not np.array_equal(images, other_crop)
    test_images, _ = next(source.iterate("test", batch_size=10))
    assert test_images.shape == (6, 16, 16, 3)


def test_unreadable_image_is_skipped_and_counted(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "train" / "dog" / "broken.jpg").write_bytes(b"not an image")
    source = ImageSource(DataConfig(kind="image_folder", root=str(tmp_path), resolution=16))
    images, labels = next(source.iterate("train", batch_size=100))
    assert len(images) == 6
    assert len(source.skipped()) == 1 and "broken.jpg" in source.skipped()[0]


def test_missing_folder_and_empty_class_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ImageSource(DataConfig(kind="image_folder", root=str(tmp_path / "nowhere")))
    _write_folder(tmp_path)
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        ImageSource(DataConfig(kind="image_folder", root=str(tmp_path)))


def test_identity_changes_when_a_file_changes(tmp_path):
    _write_folder(tmp_path)
    config = DataConfig(kind="image_folder", root=str(tmp_path), resolution=16)
    before = ImageSource(config).identity()
    Image.fromarray(np.zeros((30, 40, 3), dtype=np.uint8)).save(tmp_path / "train" / "cat" / "extra.png")
    assert ImageSource(config).identity() != before
