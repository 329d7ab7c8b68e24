"""k-NN manifold precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall
Metric for Assessing Generative Models", NeurIPS).

Each set's manifold is the union of balls around its points, each ball's radius the distance to
that point's k-th nearest neighbour within its own set (k = 3 in the paper).
- precision: the fraction of generated samples inside the real manifold (are samples realistic?);
- recall: the fraction of real samples inside the generated manifold (is the data covered?).

Written here because no maintained package fits: torch-fidelity 0.4 has this metric, but only
through its own feature extractors and importing it needs torchvision, which the built-in
feature path must not (a CPU install has no matching torchvision build); torchmetrics has none.
Distances in float64 on blocks of rows, so memory stays O(block x N).
"""

from __future__ import annotations

import torch

from var_model.errors import DataError

ROW_BLOCK = 1024


def _distances(first_ND: torch.Tensor, second_MD: torch.Tensor) -> torch.Tensor:
    return torch.cdist(first_ND, second_MD)


def _radii(features_ND: torch.Tensor, neighbours: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the same set."""
    radii = []
    for start in range(0, features_ND.shape[0], ROW_BLOCK):
        block = _distances(features_ND[start : start + ROW_BLOCK], features_ND)
        # the k+1-th smallest: the smallest is the point itself (distance 0)
        radii.append(block.kthvalue(neighbours + 1, dim=1).values)
    return torch.cat(radii)


def _inside(queries_QD: torch.Tensor, centres_ND: torch.Tensor, radii_N: torch.Tensor) -> torch.Tensor:
    """Whether each query lies within some centre's ball."""
    hits = []
    for start in range(0, queries_QD.shape[0], ROW_BLOCK):
        block = _distances(queries_QD[start : start + ROW_BLOCK], centres_ND)
        hits.append((block <= radii_N[None, :]).any(dim=1))
    return torch.cat(hits)


def precision_recall(real_ND, generated_MD, neighbours: int = 3) -> dict[str, float]:
    """{"precision", "recall"} of generated features against real ones (both (count, D))."""
    real_ND = torch.as_tensor(real_ND, dtype=torch.float64)
    generated_MD = torch.as_tensor(generated_MD, dtype=torch.float64)
    if real_ND.ndim != 2 or generated_MD.ndim != 2 or real_ND.shape[1] != generated_MD.shape[1]:
        raise DataError(
            f"precision/recall needs two (count, D) feature sets of one D, got {tuple(real_ND.shape)} and "
            f"{tuple(generated_MD.shape)}"
        )
    smallest = min(real_ND.shape[0], generated_MD.shape[0])
    if smallest <= neighbours:
        raise DataError(
            f"precision/recall with k={neighbours} needs more than {neighbours} points per set, got {smallest}; "
            "raise evaluation.samples_per_class or lower evaluation.neighbours"
        )
    real_radii = _radii(real_ND, neighbours)
    generated_radii = _radii(generated_MD, neighbours)
    return {
        "precision": float(_inside(generated_MD, real_ND, real_radii).double().mean()),
        "recall": float(_inside(real_ND, generated_MD, generated_radii).double().mean()),
    }
