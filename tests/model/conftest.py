"""Shared tiny models for the var_model tests (CPU, one thread, seeded)."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch

from var_model import VAR, VQVAE, VARConfig, VQVAEConfig

# key/shape manifest of the released checkpoints (provenance in tests/data/README.md)
MANIFEST = pathlib.Path(__file__).resolve().parents[1] / "data" / "var_official_state_dict_manifest.json"


@pytest.fixture
def tiny_vqvae() -> VQVAE:
    torch.manual_seed(0)
    return VQVAE(VQVAEConfig.debug()).eval()


@pytest.fixture
def tiny_var(tiny_vqvae) -> VAR:
    torch.manual_seed(1)
    return VAR(VARConfig.debug(), vqvae=tiny_vqvae)


@pytest.fixture
def tiny_images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(2)
    return torch.rand(4, 3, 32, 32, generator=generator) * 2 - 1


@pytest.fixture(scope="session")
def manifest() -> dict:
    if not MANIFEST.is_file():
        pytest.fail(f"reference manifest missing at {MANIFEST}; it ships with the repository")
    return json.loads(MANIFEST.read_text())
