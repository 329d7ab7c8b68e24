"""The sample metrics' arithmetic: Fréchet distance against a direct scipy computation, its
stability for near-singular covariances, k-NN precision/recall on sets with known answers, and
the protocol's bad-input errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from scipy import linalg

from analysis.sample_metrics import PROTOCOL_PREFIX, SAMPLE_METRICS
from var_model.errors import ConfigError, DataError
from var_model.evaluation import (
    BUILTIN_METRICS,
    INCEPTION_METRICS,
    METRIC_PREFIX,
    EvaluationConfig,
    frechet_distance,
    gaussian_statistics,
    precision_recall,
)
from var_model.evaluation import PROTOCOL_PREFIX as WRITTEN_PROTOCOL_PREFIX
from var_model.evaluation.frechet import frechet_distance_to_features
from var_model.evaluation.inception import (
    InceptionExtractor,
    check_inception_weights,
    fidelity_inception_module,
    read_reference,
)


def _direct_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """The textbook formula with scipy's sqrtm of the product (pytorch-fid's computation)."""
    root = linalg.sqrtm(sigma1 @ sigma2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 2 * np.real(root)))


def test_frechet_distance_equals_scipy_sqrtm_on_random_gaussians():
    rng = np.random.default_rng(0)
    for dimension in (1, 4, 16):
        a, b = rng.normal(size=(dimension, dimension)), rng.normal(size=(dimension, dimension))
        sigma1, sigma2 = a @ a.T + 0.1 * np.eye(dimension), b @ b.T + 0.1 * np.eye(dimension)
        mu1, mu2 = rng.normal(size=dimension), rng.normal(size=dimension)
        assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(
            _direct_frechet(mu1, sigma1, mu2, sigma2), rel=1e-7, abs=1e-9
        )


def test_frechet_distance_of_sample_statistics_matches_scipy():
    rng = np.random.default_rng(1)
    first, second = rng.normal(size=(400, 6)), rng.normal(loc=0.5, scale=1.5, size=(300, 6))
    statistics = (*gaussian_statistics(first), *gaussian_statistics(second))
    assert frechet_distance(*statistics) == pytest.approx(_direct_frechet(*statistics), rel=1e-7)


def test_frechet_distance_is_stable_for_near_singular_covariances():
    # 5 samples in 32 dimensions: rank-4 covariances, as K samples per class give
    rng = np.random.default_rng(2)
    first, second = rng.normal(size=(5, 32)), rng.normal(size=(5, 32))
    mu1, sigma1 = gaussian_statistics(first)
    mu2, sigma2 = gaussian_statistics(second)
    distance = frechet_distance(mu1, sigma1, mu2, sigma2)
    assert np.isfinite(distance) and distance > 0
    # a tiny ridge (what pytorch-fid adds when sqrtm fails) barely moves it
    ridge = 1e-6 * np.eye(32)
    assert distance == pytest.approx(frechet_distance(mu1, sigma1 + ridge, mu2, sigma2 + ridge), rel=1e-3)
    assert frechet_distance(mu1, sigma1, mu1, sigma1) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_names_mismatched_shapes():
    with pytest.raises(DataError, match="one D"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_precision_and_recall_on_sets_with_known_answers():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(200, 8))
    assert precision_recall(real, real.copy()) == {"precision": 1.0, "recall": 1.0}
    far = precision_recall(real, rng.normal(loc=100.0, size=(50, 8)))
    assert far == {"precision": 0.0, "recall": 0.0}
    # samples collapsed onto one real point: precise, but they cover almost nothing
    collapsed = precision_recall(real, real[:1] + 1e-3 * rng.normal(size=(50, 8)))
    assert collapsed["precision"] == 1.0 and collapsed["recall"] < 0.1


def test_precision_recall_needs_more_points_than_neighbours():
    with pytest.raises(DataError, match="samples_per_class"):
        precision_recall(np.zeros((10, 2)), np.zeros((3, 2)), neighbours=3)


def test_fewer_than_two_samples_per_class_is_refused():
    with pytest.raises(ConfigError, match="samples_per_class is 1"):
        EvaluationConfig(samples_per_class=1)


def test_inception_feature_needs_a_weights_file_and_never_downloads(tmp_path):
    with pytest.raises(ConfigError, match="inception_weights is not set"):
        EvaluationConfig(feature="inception")
    with pytest.raises(ConfigError, match="is not a file"):
        check_inception_weights(tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="is not a file"):
        InceptionExtractor(tmp_path / "missing.pth")


def test_reference_npz_without_mu_and_sigma_is_refused(tmp_path):
    path = tmp_path / "reference.npz"
    np.savez(path, arr_0=np.zeros((2, 3)))
    with pytest.raises(DataError, match=r"no \['mu', 'sigma'\]"):
        read_reference(path)
    np.savez(path, mu=np.zeros(3), sigma=np.eye(3))
    (mu, sigma), features = read_reference(path)
    assert mu.shape == (3,) and sigma.shape == (3, 3) and features is None


def test_unknown_evaluation_keys_are_named():
    with pytest.raises(ConfigError, match="unknown evaluation keys \\['samples'\\]"):
        EvaluationConfig.from_dict({"samples": 4})


def test_the_metric_names_are_those_the_analysis_reads():
    # var_model may not import analysis (layers), so the two lists are compared here
    assert {f"{METRIC_PREFIX}{name}" for name in (*BUILTIN_METRICS, *INCEPTION_METRICS)} == set(SAMPLE_METRICS)
    assert WRITTEN_PROTOCOL_PREFIX == PROTOCOL_PREFIX


def test_frechet_distance_to_features_equals_the_full_computation():
    # fewer samples than dimensions (the low-rank form) and more (the full one), against
    # statistics of a full-rank and of a rank-deficient reference; rel 1e-6, not 1e-8: the full
    # form takes square roots of round-off-sized eigenvalues of a rank-deficient S1 (measured
    # against 40-digit arithmetic, the low-rank form is the closer of the two)
    rng = np.random.default_rng(4)
    for count, dimension, reference_count in ((5, 40, 300), (5, 40, 7), (60, 8, 100)):
        features = rng.normal(loc=0.3, size=(count, dimension))
        mu2, sigma2 = gaussian_statistics(rng.normal(scale=1.5, size=(reference_count, dimension)))
        full = frechet_distance(*gaussian_statistics(features), mu2, sigma2)
        assert frechet_distance_to_features(features, mu2, sigma2) == pytest.approx(full, rel=1e-6)
    with pytest.raises(DataError, match="D = 40"):
        frechet_distance_to_features(rng.normal(size=(5, 40)), np.zeros(8), np.eye(8))


def test_the_inception_feature_without_torch_fidelity_names_the_install(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "torch_fidelity" else find_spec(name, *args)
    )
    with pytest.raises(ConfigError, match="needs torch-fidelity: make install .*--no-deps"):
        fidelity_inception_module()
