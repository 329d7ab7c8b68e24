"""The tokenizer stage: train (or load the official) VQVAE, then build the token cache once.

Runs as one Ray task before any trial (orchestration.launcher). Everything it writes lives on
the study's storage, so every node's trials read the same cache:

    <storage>/tokenizer/tokenizer.pt        the trained tokenizer (reused on relaunch)
    <storage>/token_cache/tokens-<key>/     var_model.tokenizer.build_token_cache's directory

Both steps are idempotent: a relaunch finds the tokenizer file and the cache (keyed by the
tokenizer's content hash and the data identity) and reuses them.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestration.study_spec import StudySpec

TOKENIZER_FOLDER = "tokenizer"
CACHE_FOLDER = "token_cache"


def _official_vqvae(spec: StudySpec):
    # Only the tokenizer of the release is needed here, so its state dict is read alone
    # (var_model.official's readers; load_official would also want the VAR checkpoint).
    from var_model.official import check_state_dict, infer_vqvae_config, read_state_dict
    from var_model.tokenizer.weights import freeze
    from var_model.vqvae import VQVAE

    state = read_state_dict(spec.tokenizer.vqvae_path, "VQVAE")
    config = infer_vqvae_config(state, tuple(spec.model.patch_nums), image_size=spec.data.resolution)
    vqvae = VQVAE(config)
    check_state_dict(vqvae, state, "VQVAE")
    vqvae.load_state_dict({key: value.float() if value.is_floating_point() else value
                           for key, value in state.items()}, strict=True)
    return freeze(vqvae)


def _trained_vqvae(spec: StudySpec, device: str):
    from var_model.tokenizer.training import TokenizerTrainingConfig, train_tokenizer
    from var_model.tokenizer.weights import load_tokenizer, save_tokenizer

    from orchestration.spec_parser import vqvae_config

    path = Path(spec.storage, TOKENIZER_FOLDER, "tokenizer.pt")
    if path.is_file():  # trained by an earlier launch of this study
        return load_tokenizer(path, device)
    config = vqvae_config(spec.tokenizer, spec.data.resolution, spec.model.patch_nums)
    training = TokenizerTrainingConfig(steps=spec.tokenizer.steps, batch_size=spec.tokenizer.batch_size,
                                       lr=spec.tokenizer.lr, seed=spec.data.seed)
    vqvae = train_tokenizer(config, spec.data, training, device=device)
    save_tokenizer(vqvae, path)
    return load_tokenizer(path, device)


def run_tokenizer_stage(spec: StudySpec) -> str:
    """Return the token cache directory for the study, building what is missing."""
    import torch

    from var_model.tokenizer.cache import build_token_cache

    device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    torch.set_num_threads(threads)
    vqvae = _official_vqvae(spec) if spec.tokenizer.kind == "load_official" else _trained_vqvae(spec, device)
    build = build_token_cache(vqvae, spec.data, Path(spec.storage, CACHE_FOLDER), device=device)
    return str(build.path)
