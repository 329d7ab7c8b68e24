"""The sample metrics of one set of generated images, given their features: the one place that
turns features into numbers, used for a trial's samples and for the study's floors alike.

Names (a trial logs them as `sample_<name>` metrics, the finals as `final_sample_<name>`):
- accuracy: the classifier's accuracy on samples under their own label (builtin feature);
- fd: the Fréchet distance between sample features and test-image features (builtin);
- fid, inception_score: the same with Inception-v3 pool features, and the IS (inception);
- precision, recall: k-NN manifold precision/recall against the reference features.
"""

from __future__ import annotations

import numpy as np

from var_model.evaluation.frechet import frechet_distance_to_features, gaussian_statistics
from var_model.evaluation.precision_recall import precision_recall

METRIC_PREFIX = "sample_"
BUILTIN_METRICS = ("accuracy", "fd", "precision", "recall")
INCEPTION_METRICS = ("fid", "inception_score", "precision", "recall")


def feature_metrics(
    features_ND: np.ndarray,
    reference_features_MD: np.ndarray | None,
    neighbours: int,
    reference_statistics: tuple[np.ndarray, np.ndarray] | None = None,
    distance_name: str = "fd",
) -> dict[str, float]:
    """{distance_name, precision, recall} of sample features against the reference: the
    Fréchet distance from `reference_statistics` (mu, sigma) when given (a user's .npz), else
    from the reference features; precision/recall only when reference features exist."""
    features_ND = np.asarray(features_ND, dtype=np.float64)
    if reference_statistics is None:
        reference_statistics = gaussian_statistics(reference_features_MD)
    metrics = {distance_name: frechet_distance_to_features(features_ND, *reference_statistics)}
    if reference_features_MD is not None:
        metrics.update(precision_recall(reference_features_MD, features_ND, neighbours))
    return metrics


def classifier_metrics(predictions_N: np.ndarray, labels_N: np.ndarray) -> dict[str, float]:
    return {"accuracy": float(np.mean(np.asarray(predictions_N) == np.asarray(labels_N)))}


def prefixed(metrics: dict[str, float]) -> dict[str, float]:
    """{'fd': 1.2} -> {'sample_fd': 1.2}: the names a trial logs."""
    return {f"{METRIC_PREFIX}{name}": float(value) for name, value in metrics.items()}
