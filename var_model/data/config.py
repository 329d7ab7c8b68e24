"""What data a study uses: the `DataConfig` frozen dataclass.

A `DataConfig` names the images completely (source, resolution, sizes, seed, transform), so
that its `to_dict()` can key a token cache: two configs with equal dicts produce the same
images, byte for byte.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from var_model.data.synthetic import SHAPE_NAMES
from var_model.errors import ConfigError

DATA_KINDS = ("synthetic", "image_folder")


@dataclass(frozen=True)
class DataConfig:
    """The images of a study.

    kind: "synthetic" (procedural shapes, no download; see `var_model.data.synthetic`) or
        "image_folder" (ImageNet layout: `root/<split>/<class name>/<image>`).
    resolution: side of the square images given to the tokenizer, in pixels.
    seed: seeds the synthetic images and the random crops of image-folder training data.
    num_classes: synthetic only; how many of the shape classes to use.
    train_images, test_images: synthetic only; sizes of the two splits.
    root: image_folder only; the folder holding `train_split` and `test_split`.
    train_split, test_split: image_folder sub-folder names.
    crops_per_image: image_folder only; random crops cached per training image (the paper's
        transform re-draws a crop every epoch; a cache keeps this many fixed draws).
    resize_ratio: image_folder only; the shorter side is resized to resolution*resize_ratio
        before cropping (the paper: 288/256 = 1.125).
    pixel_noise: synthetic only; each image gets Gaussian pixel noise of a std drawn uniformly
        in [0, pixel_noise] (pixel values in [0, 1]). Noise is irreducible loss for every model
        size, so it is kept small: 0.06 drowned the size effect in a minute-scale study.
    """

    kind: str = "synthetic"
    resolution: int = 32
    seed: int = 0
    num_classes: int = 12
    train_images: int = 20_000
    test_images: int = 2_000
    root: str | None = None
    train_split: str = "train"
    test_split: str = "val"
    crops_per_image: int = 1
    resize_ratio: float = 1.125
    pixel_noise: float = 0.02

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise ConfigError(f"data.kind is {self.kind!r}; allowed: {', '.join(DATA_KINDS)}")
        if not isinstance(self.resolution, int) or self.resolution < 8 or self.resolution % 8:
            raise ConfigError(
                f"data.resolution is {self.resolution!r}; use a multiple of 8, at least 8 "
                "(32 or 64 for synthetic data, 256 for ImageNet)"
            )
        for name in ("train_images", "test_images", "crops_per_image", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"data.{name} is {value!r}; it must be a positive integer")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"data.seed is {self.seed!r}; it must be a non-negative integer")
        if self.kind == "synthetic":
            if self.num_classes > len(SHAPE_NAMES):
                raise ConfigError(
                    f"data.num_classes is {self.num_classes}; the synthetic data has {len(SHAPE_NAMES)} classes at most"
                )
            if self.crops_per_image != 1:
                raise ConfigError(
                    f"data.crops_per_image is {self.crops_per_image}; synthetic images are "
                    "drawn at the target resolution and are not cropped, so it must be 1"
                )
            if self.root is not None:
                raise ConfigError("data.root is set but data.kind is 'synthetic'; remove root")
            if not (isinstance(self.pixel_noise, (int, float)) and 0.0 <= self.pixel_noise <= 0.5):
                raise ConfigError(f"data.pixel_noise is {self.pixel_noise!r}; allowed range [0, 0.5]")
        else:
            if not self.root:
                raise ConfigError("data.kind is 'image_folder' but data.root is not set")
            if not (1.0 <= float(self.resize_ratio) <= 2.0):
                raise ConfigError(
                    f"data.resize_ratio is {self.resize_ratio!r}; allowed range [1, 2] (1.125 in the paper)"
                )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DataConfig":
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown data keys {unknown}; allowed: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """The fields that decide the pixels (used in cache keys); unused fields are dropped
        so that, e.g., changing `root` spelling of synthetic data cannot split a cache."""
        values = self.to_dict()
        if self.kind == "synthetic":
            for name in ("root", "train_split", "test_split", "crops_per_image", "resize_ratio"):
                values.pop(name)
        else:
            for name in ("num_classes", "train_images", "test_images", "pixel_noise"):
                values.pop(name)
        return values
