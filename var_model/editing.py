"""Zero-shot editing of one image: in-painting, out-painting, class-conditional editing (docs/MODEL.md §3).

The mask follows the image editors' convention: WHITE pixels are regenerated, BLACK pixels are
kept (grey is a fraction of a pixel to regenerate). At every scale the mask is area-resized to
that scale's token grid; a token is kept where at least half of the pixels it covers are kept
(`generation.keep_masks_per_scale`), and a kept token is the input image's own token, not a
sampled one. In-painting regenerates an inner region, out-painting the border; both use the
null class. Class-conditional editing regenerates a region under a class label.

The output is the decoder's rendering of the edited token maps, as in the paper: in the kept
region it shows the tokenizer's reconstruction of the input, not the input's exact pixels.

Shape legend: B edits, H/W image side, l = pn*pn tokens of one scale.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from var_model.errors import DataError
from var_model.generation import keep_masks_per_scale


@dataclasses.dataclass(frozen=True)
class EditResult:
    """images_B3HW in [0, 1]; per scale, the edited token maps (B, l) and the kept positions (l,)."""

    images_B3HW: torch.Tensor
    indices: list[torch.Tensor]
    kept: list[torch.Tensor]


def read_image(path: str | os.PathLike[str], size: int) -> torch.Tensor:
    """An RGB PNG (or any image PIL reads) as (1, 3, size, size) in [-1, 1]; DataError if its size differs."""
    pixels_HW3 = np.asarray(_open(path, "image").convert("RGB"), dtype=np.float32)
    if pixels_HW3.shape[:2] != (size, size):
        height, width = pixels_HW3.shape[:2]
        raise DataError(
            f"image {path} is {width}x{height}; this checkpoint's tokenizer takes {size}x{size} images "
            f"(resize or crop it first)"
        )
    return torch.from_numpy(pixels_HW3).permute(2, 0, 1)[None] / 127.5 - 1


def read_mask(path: str | os.PathLike[str], size: int) -> torch.Tensor:
    """A mask image as (size, size) in [0, 1], 1 = regenerate (white); DataError unless it is size x size."""
    mask_HW = np.asarray(_open(path, "mask").convert("L"), dtype=np.float32) / 255
    if mask_HW.shape != (size, size):
        height, width = mask_HW.shape
        raise DataError(
            f"mask {path} is {width}x{height} but the image is {size}x{size}; give a mask of the image's size "
            f"(white = regenerate, black = keep)"
        )
    return torch.from_numpy(mask_HW)


def _open(path: str | os.PathLike[str], role: str) -> Image.Image:
    try:
        return Image.open(Path(path))
    except FileNotFoundError:
        raise DataError(f"no {role} file at {path}") from None
    except UnidentifiedImageError:
        raise DataError(f"{role} {path} is not an image file PIL can read (give a PNG)") from None


def resolve_label(text: str | None, class_names: list[str], num_classes: int) -> int:
    """`--label` as a class index: a number in [0, num_classes) or a class name; None is the null class."""
    if text is None:
        return num_classes
    if text in class_names:
        return class_names.index(text)
    names = f" or a name ({', '.join(class_names)})" if class_names else ""
    try:
        label = int(text)
    except ValueError:
        raise DataError(f"--label {text!r} is not a class: give an index in [0, {num_classes - 1}]{names}") from None
    if not 0 <= label < num_classes:
        raise DataError(
            f"--label {label} is outside the {num_classes} classes: give an index in [0, {num_classes - 1}]{names}, "
            f"or leave it out for in-/out-painting (the null class)"
        )
    return label


def edit_image(
    var,
    image_13HW: torch.Tensor,
    regenerate_HW: torch.Tensor,
    label: int,
    samples: int = 1,
    cfg: float = 1.5,
    top_k: int = 0,
    top_p: float = 0.96,
    seed: int | None = 0,
) -> EditResult:
    """`samples` edits of one image in [-1, 1]: the tokens where `regenerate_HW` (1 = regenerate)
    covers more than half a token are sampled under `label` (num_classes: the null class), the
    others are the image's own tokens. DataError if the mask regenerates no token at all."""
    if samples < 1:
        raise DataError(f"--samples is {samples}; give at least 1")
    keep_HW = 1 - regenerate_HW
    kept = [mask_l[0] for mask_l in keep_masks_per_scale(keep_HW, var.patch_nums, batch_size=1)]
    if all(bool(mask_l.all()) for mask_l in kept):
        finest = var.patch_nums[-1]
        raise DataError(
            f"the mask regenerates no token: a token is regenerated where more than half of its pixels are white, "
            f"and the finest of the {finest}x{finest} tokens covers {image_13HW.shape[-1] // finest} pixels a side; "
            f"paint a larger white region"
        )
    reference = var.vqvae.encode_indices(image_13HW.to(var.pos_1LC.device))
    images_B3HW, indices = var.generate(
        label,
        cfg=cfg,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        batch_size=samples,
        reference_indices=reference,
        keep_mask=keep_HW,
        return_indices=True,
    )
    return EditResult(images_B3HW=images_B3HW, indices=indices, kept=kept)


def to_uint8_row(images_B3HW: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] side by side: uint8 (H, B*W, 3), ready for PIL."""
    pixels_BHW3 = (images_B3HW.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return np.concatenate(list(pixels_BHW3), axis=1)
