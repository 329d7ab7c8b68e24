"""ImageNet-layout folders (`root/<split>/<class>/<image>`) with the paper's transforms.

Transform (VAR paper, section 4 of the spec): resize the shorter side to
round(resolution * resize_ratio) with Lanczos, then a random crop (training) or the centre
crop (test). Random crops are drawn from a generator seeded by (seed, image index, crop
index), so a token cache of `crops_per_image` crops is reproducible.

An image that PIL cannot read is skipped and counted (a long run must never die for one bad
file); a missing folder or a class folder without images is a clear `DataError`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from var_model.errors import DataError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


@dataclass
class ImageFolderSplit:
    """The file list of one split; `skipped` collects unreadable files as they are met."""

    directory: Path
    class_names: list[str]
    files: list[tuple[Path, int]]
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def scan(cls, directory: str | os.PathLike[str]) -> "ImageFolderSplit":
        directory = Path(directory)
        if not directory.is_dir():
            raise DataError(
                f"image folder {directory} does not exist or is not a directory; expected "
                "ImageNet layout <root>/<split>/<class name>/<image files>"
            )
        class_names = sorted(entry.name for entry in directory.iterdir() if entry.is_dir())
        if not class_names:
            raise DataError(f"image folder {directory} has no class sub-folders")
        files: list[tuple[Path, int]] = []
        for label, name in enumerate(class_names):
            class_files = sorted(
                path
                for path in (directory / name).iterdir()
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
            )
            if not class_files:
                raise DataError(
                    f"class folder {directory / name} holds no images (looked for "
                    f"{', '.join(IMAGE_SUFFIXES)}); remove the folder or add images"
                )
            files.extend((path, label) for path in class_files)
        return cls(directory=directory, class_names=class_names, files=files)

    def fingerprint(self) -> str:
        """A hash of the file list (relative path, size, mtime): cheap, and it changes when
        any image is added, removed or rewritten, which is what a cache key needs."""
        digest = hashlib.sha256()
        for path, label in self.files:
            status = path.stat()
            relative = path.relative_to(self.directory).as_posix()
            digest.update(f"{relative}\t{label}\t{status.st_size}\t{status.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def iterate(
        self,
        resolution: int,
        resize_ratio: float,
        batch_size: int,
        random_crop: bool,
        seed: int,
        crop_index: int,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (images_NHWC uint8, labels int64) batches; unreadable files are skipped and
        their paths appended to `self.skipped`."""
        images: list[np.ndarray] = []
        labels: list[int] = []
        for image_index, (path, label) in enumerate(self.files):
            picture = self._read_rgb(path)
            if picture is None:
                continue
            crop_generator = np.random.default_rng([seed, image_index, crop_index])
            images.append(transform_image(picture, resolution, resize_ratio, random_crop, crop_generator))
            labels.append(label)
            if len(images) == batch_size:
                yield np.stack(images), np.asarray(labels, dtype=np.int64)
                images, labels = [], []
        if images:
            yield np.stack(images), np.asarray(labels, dtype=np.int64)

    def _read_rgb(self, path: str) -> Image.Image | None:
        """The image as RGB, or None after recording why it could not be read: one bad file
        is skipped and counted, never allowed to crash a long run."""
        try:
            with Image.open(path) as opened:
                return opened.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as error:
            self.skipped.append(f"{path}: {error}")
            return None

    def load(
        self,
        positions: np.ndarray,
        resolution: int,
        resize_ratio: float,
        random_crop: bool,
        generator: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Random access for shuffled training (the tokenizer): the images at `positions`,
        cropped with `generator`; unreadable files are skipped and counted."""
        images: list[np.ndarray] = []
        labels: list[int] = []
        for position in positions:
            path, label = self.files[int(position)]
            picture = self._read_rgb(path)
            if picture is None:
                continue
            images.append(transform_image(picture, resolution, resize_ratio, random_crop, generator))
            labels.append(label)
        if not images:
            raise DataError(f"none of {len(positions)} sampled images in {self.directory} is readable")
        return np.stack(images), np.asarray(labels, dtype=np.int64)


def transform_image(
    picture: Image.Image,
    resolution: int,
    resize_ratio: float,
    random_crop: bool,
    generator: np.random.Generator,
) -> np.ndarray:
    """Resize the shorter side to round(resolution*resize_ratio) (Lanczos), then crop a
    resolution x resolution square: random (training) or central (test)."""
    shorter = round(resolution * resize_ratio)
    width, height = picture.size
    scale = shorter / min(width, height)
    new_size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    picture = picture.resize(new_size, Image.LANCZOS)
    width, height = picture.size
    if random_crop:
        left = int(generator.integers(0, width - resolution + 1))
        top = int(generator.integers(0, height - resolution + 1))
    else:
        left = (width - resolution) // 2
        top = (height - resolution) // 2
    cropped = picture.crop((left, top, left + resolution, top + resolution))
    return np.asarray(cropped, dtype=np.uint8)
