"""The evaluation step of a trial: K samples per class with the protocol's sampling settings,
their features, and the sample metrics (evaluation/metrics.py), with the protocol recorded.

    evaluator = SampleEvaluator.for_trial(EvaluationConfig.from_dict(...), token_cache, device)
    evaluator.protocol()        # -> params of the trial's run (sample_protocol_*)
    evaluator.evaluate(var)     # -> {"sample_fd": ..., "sample_accuracy": ..., ...}

Built at the start of a trial, so that a missing feature network, weights file or reference
fails before any training. Sampling: batch b (of `batch_size` images, classes in order, each K
times) uses seed `seed + b`, so a trial's samples are a function of the protocol alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from var_model.errors import ConfigError
from var_model.evaluation.config import EvaluationConfig
from var_model.evaluation.features import (
    FeatureNetwork,
    feature_network_dir,
    load_feature_network,
    load_reference,
)
from var_model.evaluation.inception import (
    InceptionExtractor,
    check_inception_weights,
    inception_reference_path,
    inception_score,
    read_reference,
)
from var_model.evaluation.metrics import classifier_metrics, feature_metrics, prefixed
from var_model.files import file_sha256

PROTOCOL_PREFIX = "sample_protocol_"
BUILTIN_IMPLEMENTATION = "varscale builtin classifier features; Frechet eigh float64; k-NN precision/recall"
INCEPTION_IMPLEMENTATION = (
    "torch-fidelity FeatureExtractorInceptionV3 (inception-v3-compat, 2048 pool); varscale Frechet "
    "eigh float64; torchmetrics InceptionScore; k-NN precision/recall"
)
SECONDS_METRIC = "sample_evaluation_seconds"


def generate_samples(var, num_classes: int, config: EvaluationConfig) -> tuple[torch.Tensor, np.ndarray]:
    """(images (N, 3, H, W) in [0, 1], labels (N,)): K samples of every class, in batches."""
    labels = np.repeat(np.arange(num_classes), config.samples_per_class)
    images = []
    for batch, start in enumerate(range(0, len(labels), config.batch_size)):
        label_B = torch.as_tensor(labels[start : start + config.batch_size], device=var.pos_1LC.device)
        images.append(
            var.generate(label_B, cfg=config.cfg, top_k=config.top_k, top_p=config.top_p, seed=config.seed + batch)
        )
    return torch.cat(images).clamp(0, 1), labels


def to_uint8(images_B3HW: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> uint8, as an image file would hold them (what Inception is fed)."""
    return (images_B3HW.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


@dataclass
class SampleEvaluator:
    config: EvaluationConfig
    num_classes: int
    feature_name: str  # what the protocol records
    feature_sha256: str
    reference_sha256: str
    reference_features: np.ndarray | None
    reference_statistics: tuple[np.ndarray, np.ndarray] | None
    network: FeatureNetwork | None = None
    inception: InceptionExtractor | None = None

    @classmethod
    def for_trial(cls, config: EvaluationConfig, cache, device: torch.device) -> SampleEvaluator:
        """The evaluator of a trial on token cache `cache` (a TokenCache): the study's files
        live beside the cache, under its cache root."""
        return cls.for_study(config, cache.path.parent, cache.manifest["data"], cache.num_classes, device)

    @classmethod
    def for_study(
        cls, config: EvaluationConfig, cache_root, data_identity: dict, num_classes: int, device: torch.device
    ) -> SampleEvaluator:
        """The evaluator of the study's files under `cache_root` (features-*/, inception-reference-*)."""
        if config.feature == "builtin":
            directory = feature_network_dir(cache_root, data_identity, config.network)
            network, report = load_feature_network(directory, data_identity, device)
            features, _ = load_reference(directory)
            return cls(
                config,
                num_classes,
                f"builtin {directory.name}",
                report["network_sha256"],
                report["reference_sha256"],
                features,
                None,
                network=network,
            )
        weights_sha256 = check_inception_weights(config.inception_weights)
        reference = config.reference or inception_reference_path(cache_root, data_identity, weights_sha256)
        if not config.reference and not reference.is_file():
            raise ConfigError(
                f"no Inception reference statistics at {reference}; the study's tokenizer stage computes them from "
                "the test split, or name an .npz with mu and sigma in evaluation.reference"
            )
        statistics, features = read_reference(reference)
        return cls(
            config,
            num_classes,
            "inception-v3-compat pool 2048",
            weights_sha256,
            file_sha256(reference),
            features,
            statistics,
            inception=InceptionExtractor(config.inception_weights, device),
        )

    def protocol(self) -> dict[str, Any]:
        """The protocol record, logged as params of the trial's run beside its sample metrics."""
        config = self.config
        values = {
            "samples": config.samples_per_class * self.num_classes,
            "samples_per_class": config.samples_per_class,
            "cfg": config.cfg,
            "top_k": config.top_k,
            "top_p": config.top_p,
            "seed": config.seed,
            "feature": self.feature_name,
            "feature_sha256": self.feature_sha256,
            "reference_sha256": self.reference_sha256,
            "neighbours": config.neighbours,
            "implementation": BUILTIN_IMPLEMENTATION if self.network is not None else INCEPTION_IMPLEMENTATION,
        }
        return {f"{PROTOCOL_PREFIX}{name}": value for name, value in values.items()}

    @torch.no_grad()
    def evaluate(self, var) -> dict[str, float]:
        """Sample, embed, score: {"sample_<metric>": value, ..., "sample_evaluation_seconds": s}."""
        started = time.perf_counter()
        images, labels = generate_samples(var, self.num_classes, self.config)
        # quantised as an image file would hold them: the floors' real images take the same path
        metrics = self.score(to_uint8(images).float() / 255, labels)
        return {**prefixed(metrics), SECONDS_METRIC: time.perf_counter() - started}

    def score(self, images_B3HW: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
        """The metrics of images in [0, 1] (samples, or real images for a floor), unprefixed."""
        if self.network is not None:
            device = next(self.network.parameters()).device
            features, predictions = self.network.embed(images_B3HW.to(device) * 2 - 1)
            return {
                **classifier_metrics(predictions.cpu().numpy(), labels),
                **feature_metrics(features.cpu().numpy(), self.reference_features, self.config.neighbours),
            }
        pools, logits = [], []
        for start in range(0, images_B3HW.shape[0], self.config.batch_size):
            pool_BF, logits_BV = self.inception(to_uint8(images_B3HW[start : start + self.config.batch_size]))
            pools.append(pool_BF.cpu())
            logits.append(logits_BV.cpu())
        metrics = feature_metrics(
            torch.cat(pools).numpy(),
            self.reference_features,
            self.config.neighbours,
            reference_statistics=self.reference_statistics,
            distance_name="fid",
        )
        return {**metrics, "inception_score": inception_score(torch.cat(logits))}
