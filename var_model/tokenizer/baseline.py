"""Frequency baselines of a token cache: what a model that ignores all context would score.

`unigram` is the position-agnostic unigram: one token distribution p(v), estimated from every
token of the training split (add-one smoothed so a token unseen in training costs log(count)
rather than infinity), scored as cross-entropy on the test split. `per_scale_unigram` keeps
one distribution per scale, a stronger context-free baseline. A VAR that learnt anything beats
both; the first is the acceptance bar of a trial.
"""

from __future__ import annotations

import json

import numpy as np

from var_model.files import atomic_write_json
from var_model.tokenizer.cache import TokenCache

ROWS_PER_CHUNK = 65_536
BASELINES_FILE = "baselines.json"  # beside a cache's arrays: a function of them alone


def _counts(indices: np.ndarray, columns: slice, vocabulary: int) -> np.ndarray:
    counts = np.zeros(vocabulary, dtype=np.int64)
    for start in range(0, len(indices), ROWS_PER_CHUNK):
        block = np.asarray(indices[start : start + ROWS_PER_CHUNK, columns], dtype=np.int64)
        counts += np.bincount(block.reshape(-1), minlength=vocabulary)
    return counts


def _cross_entropy(log_probability: np.ndarray, indices: np.ndarray, columns: slice) -> tuple[float, int]:
    total, count = 0.0, 0
    for start in range(0, len(indices), ROWS_PER_CHUNK):
        block = np.asarray(indices[start : start + ROWS_PER_CHUNK, columns], dtype=np.int64)
        total -= float(log_probability[block].sum(dtype=np.float64))
        count += block.size
    return total, count


def unigram_baselines(cache: TokenCache) -> dict[str, float]:
    """Test cross-entropy (nats) of the train split's token frequencies:
    `unigram_test_loss_avg` / `unigram_test_loss_last` (one distribution for all positions),
    `per_scale_unigram_test_loss_avg` / `..._last` (one per scale), and the train entropy."""
    vocabulary = cache.codebook_size
    train, test = cache.indices("train"), cache.indices("test")
    bounds = np.cumsum([0] + [pn * pn for pn in cache.patch_nums])
    scale_columns = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    everything, last = slice(0, int(bounds[-1])), scale_columns[-1]

    counts = _counts(train, everything, vocabulary)
    log_probability = np.log((counts + 1.0) / (counts.sum() + vocabulary))
    total_all, count_all = _cross_entropy(log_probability, test, everything)
    total_last, count_last = _cross_entropy(log_probability, test, last)
    empirical = counts[counts > 0] / counts.sum()

    per_scale_total, per_scale_last = 0.0, 0.0
    for columns in scale_columns:
        scale_counts = _counts(train, columns, vocabulary)
        scale_log_probability = np.log((scale_counts + 1.0) / (scale_counts.sum() + vocabulary))
        total, _ = _cross_entropy(scale_log_probability, test, columns)
        per_scale_total += total
        per_scale_last = total  # the loop ends on the last scale
    return {
        "unigram_test_loss_avg": total_all / count_all,
        "unigram_test_loss_last": total_last / count_last,
        "per_scale_unigram_test_loss_avg": per_scale_total / count_all,
        "per_scale_unigram_test_loss_last": per_scale_last / count_last,
        "unigram_train_entropy": float(-(empirical * np.log(empirical)).sum()),
    }


def stored_unigram_baselines(cache: TokenCache) -> dict[str, float]:
    """`unigram_baselines(cache)`, computed once per cache and kept in its BASELINES_FILE: the
    passes cost ~7 s per 100k images of 680 tokens (2 busy cores), so minutes for ImageNet, and
    every stage run and every finished trial asks. Read-only storage: computed each time."""
    path = cache.path / BASELINES_FILE
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored["cache_key"] == cache.key:
            return {name: float(value) for name, value in stored["baselines"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # absent, cut or foreign: computed again
    baselines = unigram_baselines(cache)
    try:
        atomic_write_json(path, {"cache_key": cache.key, "baselines": baselines})
    except OSError:
        pass
    return baselines
