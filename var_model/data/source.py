"""One interface over both data kinds: batches of uint8 images and int64 labels per split.

The tokenizer trainer and the token-cache builder only see `ImageSource`; they never branch
on the data kind. Splits are named "train" and "test" whatever the folder names are.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from var_model.data.config import DataConfig
from var_model.data.image_folder import ImageFolderSplit
from var_model.data.synthetic import SHAPE_NAMES, generate_synthetic_images
from var_model.errors import ConfigError, DataError

SPLITS = ("train", "test")


class ImageSource:
    """The images a `DataConfig` names. Synthetic splits are generated on first use and
    kept in memory (tens of MB); image-folder splits are streamed from disk."""

    def __init__(self, config: DataConfig) -> None:
        self.config = config
        self._synthetic: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._folders: dict[str, ImageFolderSplit] = {}
        if config.kind == "image_folder":
            root = config.root
            assert root is not None  # DataConfig validation guarantees it
            for split, folder in (("train", config.train_split), ("test", config.test_split)):
                self._folders[split] = ImageFolderSplit.scan(f"{root}/{folder}")
            train_classes = self._folders["train"].class_names
            test_classes = self._folders["test"].class_names
            if train_classes != test_classes:
                missing = sorted(set(train_classes) ^ set(test_classes))
                raise DataError(
                    f"train and test folders under {root} have different classes "
                    f"(differing: {missing[:5]}{'...' if len(missing) > 5 else ''})"
                )

    @property
    def class_names(self) -> list[str]:
        if self.config.kind == "synthetic":
            return list(SHAPE_NAMES[: self.config.num_classes])
        return self._folders["train"].class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def crops_per_image(self, split: str) -> int:
        """Training images may be cached as several random crops; test images never are."""
        self._check_split(split)
        return self.config.crops_per_image if split == "train" else 1

    def num_images(self, split: str) -> int:
        """Images in a split (for folders, before unreadable files are skipped)."""
        self._check_split(split)
        if self.config.kind == "synthetic":
            return self.config.train_images if split == "train" else self.config.test_images
        return len(self._folders[split].files)

    def skipped(self) -> list[str]:
        """Unreadable files met so far, as 'path: reason' lines."""
        return [line for folder in self._folders.values() for line in folder.skipped]

    def identity(self) -> dict[str, Any]:
        """Everything that decides the pixels, for cache keys: the config's relevant fields
        and, for folders, a fingerprint of each split's file list."""
        identity: dict[str, Any] = dict(self.config.identity())
        for split, folder in self._folders.items():
            identity[f"{split}_files"] = folder.fingerprint()
        return identity

    def iterate(self, split: str, batch_size: int, crop_index: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (images_NHWC uint8, labels int64) in a fixed order."""
        self._check_split(split)
        if batch_size < 1:
            raise ConfigError(f"batch_size is {batch_size}; it must be positive")
        if not 0 <= crop_index < self.crops_per_image(split):
            raise ConfigError(
                f"crop_index is {crop_index}; split {split!r} has {self.crops_per_image(split)} crop(s) per image"
            )
        if self.config.kind == "synthetic":
            images_NHWC, labels = self.arrays(split)
            for start in range(0, len(labels), batch_size):
                yield images_NHWC[start : start + batch_size], labels[start : start + batch_size]
            return
        yield from self._folders[split].iterate(
            resolution=self.config.resolution,
            resize_ratio=self.config.resize_ratio,
            batch_size=batch_size,
            random_crop=split == "train",
            seed=self.config.seed,
            crop_index=crop_index,
        )

    def random_batch(
        self, split: str, batch_size: int, generator: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """A uniformly sampled batch (with replacement), for shuffled training; folder images
        get a fresh random crop (train) each time, as the paper's transform does."""
        self._check_split(split)
        positions = generator.integers(0, self.num_images(split), size=batch_size)
        if self.config.kind == "synthetic":
            images_NHWC, labels = self.arrays(split)
            return images_NHWC[positions], labels[positions]
        return self._folders[split].load(
            positions, self.config.resolution, self.config.resize_ratio, split == "train", generator
        )

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """A whole synthetic split as (images_NHWC, labels); folders are too big for this."""
        self._check_split(split)
        if self.config.kind != "synthetic":
            raise DataError("arrays() holds whole splits in memory: synthetic data only")
        if split not in self._synthetic:
            self._synthetic[split] = generate_synthetic_images(
                num_images=self.num_images(split),
                resolution=self.config.resolution,
                num_classes=self.config.num_classes,
                seed=self.config.seed,
                split=split,
                pixel_noise=self.config.pixel_noise,
            )
        return self._synthetic[split]

    @staticmethod
    def _check_split(split: str) -> None:
        if split not in SPLITS:
            raise ConfigError(f"split is {split!r}; allowed: {', '.join(SPLITS)}")


def images_to_model_input(images_NHWC: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [-1, 1], the VQVAE's input range."""
    if images_NHWC.dtype != np.uint8 or images_NHWC.ndim != 4 or images_NHWC.shape[-1] != 3:
        raise DataError(f"expected uint8 images of shape (N, H, W, 3), got {images_NHWC.dtype} {images_NHWC.shape}")
    images = torch.from_numpy(np.ascontiguousarray(images_NHWC)).to(device)
    return images.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
