"""Saving, loading and hashing a trained tokenizer (config + weights in one file).

The content hash covers the config and every tensor's name, dtype, shape and bytes, so two
tokenizers hash equal exactly when they encode identically; it keys the token cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from var_model.config import VQVAEConfig
from var_model.errors import CheckpointError
from var_model.files import atomic_write
from var_model.vqvae import VQVAE

TOKENIZER_FILE = "tokenizer.pt"


def tokenizer_hash(vqvae: VQVAE) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(vqvae.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(vqvae.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_tokenizer(vqvae: VQVAE, path: str | os.PathLike[str]) -> Path:
    """Write {config, state_dict} atomically (var_model/files.py)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu() for name, tensor in vqvae.state_dict().items()}
    saved = {"config": vqvae.config.to_dict(), "state_dict": state}
    return atomic_write(path, lambda handle: torch.save(saved, handle))


def load_tokenizer(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> VQVAE:
    """A frozen (eval, no-grad) VQVAE from `save_tokenizer`'s file."""
    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no tokenizer file at {path}") from None
    except Exception as error:
        raise CheckpointError(f"tokenizer file {path} cannot be read ({type(error).__name__}: {error})") from error
    if not isinstance(saved, dict) or set(saved) != {"config", "state_dict"}:
        raise CheckpointError(f"tokenizer file {path} must hold exactly 'config' and 'state_dict'")
    vqvae = VQVAE(VQVAEConfig.from_dict(saved["config"]))
    try:
        vqvae.load_state_dict(saved["state_dict"], strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"tokenizer file {path} does not match its config: {error}") from error
    return freeze(vqvae.to(device))


def freeze(vqvae: VQVAE) -> VQVAE:
    """The tokenizer is frozen while a VAR trains: eval mode, no gradients."""
    vqvae.eval()
    for parameter in vqvae.parameters():
        parameter.requires_grad_(False)
    return vqvae
