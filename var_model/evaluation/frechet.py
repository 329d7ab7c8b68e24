"""The Fréchet distance between two Gaussians fitted to feature sets (FID's formula).

    d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

Written here (numpy, float64) rather than taken from torchmetrics because it runs on our own
features and on reference statistics read from a file, where torchmetrics' metric object only
takes images through its own extractor. The trace term is computed in a form that stays
stable when a covariance is near-singular (fewer samples than feature dimensions, which is the
usual case for K samples per class): Tr((S1 S2)^(1/2)) = sum of sqrt(eigenvalues of
S1^(1/2) S2 S1^(1/2)), a symmetric positive semi-definite matrix, so `eigvalsh` applies and
tiny negative round-off eigenvalues are clipped to 0. scipy's `sqrtm(S1 @ S2)` of a
non-symmetric product can return a complex or NaN result there (the torch-fidelity and
pytorch-fid implementations add an eps to the diagonal as a fallback); tests/model compare
both on well-conditioned Gaussians.

`frechet_distance_to_features` is the same number for a feature set against statistics, in
O(N D^2) instead of O(D^3) when there are fewer samples N than dimensions D (K samples per class
in Inception's 2048 dimensions: an eigendecomposition of a 2048 x 2048 matrix costs seconds per
call on a CPU, and a study computes one per floor and per trial).
"""

from __future__ import annotations

import numpy as np

from var_model.errors import DataError


def gaussian_statistics(features_ND: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu (D,), sigma (D, D)) of N feature vectors, the unbiased covariance (N - 1)."""
    features_ND = _feature_matrix(features_ND)
    return features_ND.mean(axis=0), np.cov(features_ND, rowvar=False)


def _feature_matrix(features_ND) -> np.ndarray:
    features_ND = np.asarray(features_ND, dtype=np.float64)
    if features_ND.ndim != 2 or features_ND.shape[0] < 2:
        raise DataError(f"need at least 2 feature vectors of shape (N, D), got {features_ND.shape}")
    return features_ND


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); always >= 0."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    dimension = mu1.shape[0]
    shapes = {"mu1": mu1.shape, "mu2": mu2.shape, "sigma1": sigma1.shape, "sigma2": sigma2.shape}
    expected = {"mu1": (dimension,), "mu2": (dimension,), "sigma1": (dimension,) * 2, "sigma2": (dimension,) * 2}
    if shapes != expected:
        raise DataError(f"Fréchet distance needs means (D,) and covariances (D, D) of one D; got {shapes}")
    _check_finite(mu1, mu2, sigma1, sigma2)
    root1 = _symmetric_sqrt(sigma1)
    return _distance(mu1, mu2, np.trace(sigma1), sigma2, root1 @ sigma2 @ root1)


def frechet_distance_to_features(features_ND: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """frechet_distance(*gaussian_statistics(features_ND), mu2, sigma2), computed without a D x D
    eigendecomposition when N <= D: with X the centred features / sqrt(N - 1) (so S1 = X^T X),
    S1 S2 = X^T (X S2) has the nonzero eigenvalues of the N x N symmetric PSD matrix X S2 X^T."""
    features_ND = _feature_matrix(features_ND)
    count, dimension = features_ND.shape
    if count > dimension:
        return frechet_distance(*gaussian_statistics(features_ND), mu2, sigma2)
    mu1 = features_ND.mean(axis=0)
    mu2, sigma2 = np.asarray(mu2, np.float64), np.asarray(sigma2, np.float64)
    if mu2.shape != (dimension,) or sigma2.shape != (dimension, dimension):
        raise DataError(
            f"Fréchet distance needs reference statistics of the features' D = {dimension}; got mean {mu2.shape} "
            f"and covariance {sigma2.shape}"
        )
    centred = (features_ND - mu1) / np.sqrt(count - 1)
    _check_finite(mu1, mu2, centred, sigma2)
    # Tr(S1) = Tr(X^T X) = the sum of X's squares: S1 itself is never formed
    return _distance(mu1, mu2, np.sum(centred**2), sigma2, centred @ ((sigma2 + sigma2.T) / 2) @ centred.T)


def _check_finite(*arrays: np.ndarray) -> None:
    if not all(np.isfinite(array).all() for array in arrays):
        raise DataError("Fréchet distance got a non-finite mean or covariance (NaN or inf features?)")


def _distance(mu1, mu2, trace_sigma1: float, sigma2, psd_product: np.ndarray) -> float:
    """|mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)), the last from a symmetric PSD
    matrix with the nonzero eigenvalues of S1 S2 (S1^(1/2) S2 S1^(1/2), or X S2 X^T)."""
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((psd_product + psd_product.T) / 2), 0.0, None)).sum()
    distance = float(np.sum((mu1 - mu2) ** 2) + trace_sigma1 + np.trace(sigma2) - 2.0 * trace_sqrt)
    return max(distance, 0.0)  # round-off can leave -1e-12 where the two are equal
