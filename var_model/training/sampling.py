"""An image grid sampled from a trained VAR (one row per class), written as a PNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from var_model.errors import ConfigError
from var_model.files import atomic_write


def sample_grid(
    model: torch.nn.Module,
    labels: list[int],
    samples_per_label: int,
    cfg: float,
    top_k: int,
    top_p: float,
    seed: int,
) -> np.ndarray:
    """uint8 (rows*H, cols*W, 3): row r holds `samples_per_label` samples of labels[r]."""
    if not labels:
        raise ConfigError("sample grid needs at least one label")
    num_classes = model.config.num_classes
    bad = [label for label in labels if not 0 <= label <= num_classes]
    if bad:
        raise ConfigError(f"labels {bad} are outside [0, {num_classes}] ({num_classes} = unconditional)")
    label_B = torch.tensor([label for label in labels for _ in range(samples_per_label)])
    images_B3HW = model.generate(label_B, cfg=cfg, top_k=top_k, top_p=top_p, seed=seed)
    images = (images_B3HW.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    height, width = images.shape[1:3]
    grid = images.reshape(len(labels), samples_per_label, height, width, 3)
    return grid.transpose(0, 2, 1, 3, 4).reshape(len(labels) * height, samples_per_label * width, 3)


def save_png(grid: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write atomically (var_model/files.py), so a reader never sees half a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda handle: Image.fromarray(grid).save(handle, format="PNG"))
