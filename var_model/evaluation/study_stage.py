"""The study's share of the evaluation, run once in its tokenizer stage (before any trial):

- builtin feature: train (or reuse) the feature network on the real training images and store
  the test images' features as the reference (evaluation/features.py);
- inception feature: compute the test (validation) split's Inception statistics once, unless the
  user named an .npz (evaluation/inception.py);
- the floors of every sample metric, under the trials' own protocol (K images per class):
  `real` = real training images (only the sample count's noise: the best any generator can
  score), `reconstruction` = the same images through the tokenizer (the best a VAR on this
  tokenizer can score).

    report = prepare_study_evaluation(config, source, vqvae, cache_root, device)
    # {"feature_test_accuracy": 0.99, "floor_real_sample_fd": ..., "floor_reconstruction_sample_fd": ...}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from var_model.data.source import ImageSource, images_to_model_input
from var_model.evaluation.config import EvaluationConfig
from var_model.evaluation.evaluator import SampleEvaluator, to_uint8
from var_model.evaluation.features import build_feature_network
from var_model.evaluation.inception import (
    InceptionExtractor,
    check_inception_weights,
    inception_reference_path,
    write_reference,
)
from var_model.vqvae import VQVAE

STAGE_BATCH = 128


def per_class_images(source: ImageSource, split: str, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `per_class` images of every class of a split, in class order (uint8 NHWC, labels)."""
    chosen: dict[int, list[np.ndarray]] = {label: [] for label in range(source.num_classes)}
    for images_NHWC, labels_N in source.iterate(split, STAGE_BATCH):
        for image, label in zip(images_NHWC, labels_N, strict=True):
            if len(chosen[int(label)]) < per_class:
                chosen[int(label)].append(image)
        if all(len(images) == per_class for images in chosen.values()):
            break
    short = {label: len(images) for label, images in chosen.items() if len(images) < per_class}
    if short:
        raise ValueError(f"split {split!r} has fewer than {per_class} images of classes {short}")
    labels = np.repeat(np.arange(source.num_classes), per_class)
    return np.stack([image for label in sorted(chosen) for image in chosen[label]]), labels


def prepare_study_reference(
    config: EvaluationConfig, source: ImageSource, cache_root: str | os.PathLike[str], device: torch.device
) -> None:
    """Train (or reuse) the builtin feature network, or compute the Inception reference: the
    part that needs the real images alone, not the tokenizer (so it can run beside its training)."""
    cache_root = Path(cache_root)
    if config.feature == "builtin":
        build_feature_network(source, config.network, cache_root, device)
        return
    weights_sha256 = check_inception_weights(config.inception_weights)
    path = inception_reference_path(cache_root, source.identity(), weights_sha256)
    if config.reference or path.is_file():
        return  # the user's statistics, or this study's computed earlier
    extractor = InceptionExtractor(config.inception_weights, device)
    pools = []
    for images_NHWC, _ in source.iterate("test", STAGE_BATCH):
        image_B3HW = torch.from_numpy(np.ascontiguousarray(images_NHWC)).permute(0, 3, 1, 2).to(device)
        pools.append(extractor(image_B3HW)[0].cpu().numpy())
    cache_root.mkdir(parents=True, exist_ok=True)
    write_reference(path, np.concatenate(pools))


def prepare_study_evaluation(
    config: EvaluationConfig,
    source: ImageSource,
    vqvae: VQVAE,
    cache_root: str | os.PathLike[str],
    device: torch.device,
) -> dict[str, Any]:
    """Build the study's feature network or reference, then measure the floors; returns the
    numbers for the study's parent run."""
    cache_root = Path(cache_root)
    prepare_study_reference(config, source, cache_root, device)  # trains the builtin network: gradients on
    with torch.no_grad():
        return _floors(config, source, vqvae, cache_root, device)


def _floors(
    config: EvaluationConfig, source: ImageSource, vqvae: VQVAE, cache_root: Path, device: torch.device
) -> dict[str, Any]:
    evaluator = SampleEvaluator.for_study(config, cache_root, source.identity(), source.num_classes, device)
    images_NHWC, labels = per_class_images(source, "train", config.samples_per_class)
    real_B3HW = images_to_model_input(images_NHWC, device)
    reconstructions = []
    vqvae = vqvae.to(device).eval()
    for start in range(0, real_B3HW.shape[0], STAGE_BATCH):
        batch = real_B3HW[start : start + STAGE_BATCH]
        reconstructions.append(vqvae.decode_indices(vqvae.encode_indices(batch)).clamp(-1, 1))
    report: dict[str, Any] = {}
    if evaluator.network is not None:
        test_images, test_labels = source.arrays("test")
        _, predictions = evaluator.network.embed(images_to_model_input(test_images, device))
        report["feature_test_accuracy"] = float((predictions.cpu().numpy() == test_labels).mean())
    for name, images in (("real", real_B3HW), ("reconstruction", torch.cat(reconstructions))):
        # both through the same [0, 1] -> uint8 path as generated samples take
        as_samples = to_uint8((images + 1) / 2).float() / 255
        for metric, value in evaluator.score(as_samples, labels).items():
            report[f"floor_{name}_sample_{metric}"] = value
    return report
