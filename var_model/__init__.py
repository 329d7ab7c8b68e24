"""var_model: a faithful VAR (next-scale prediction) and its multi-scale VQVAE tokenizer.

Tiny CPU example:
    >>> import torch
    >>> from var_model import VQVAE, VQVAEConfig, VAR, VARConfig
    >>> vqvae = VQVAE(VQVAEConfig.debug())
    >>> var = VAR(VARConfig.debug(), vqvae=vqvae)
    >>> idx_list = vqvae.encode_indices(torch.rand(2, 3, 32, 32) * 2 - 1)
    >>> var(torch.tensor([1, 2]), vqvae.teacher_forcing_input(idx_list)).shape
    torch.Size([2, 21, 64])

The names below are loaded on first use (PEP 562), not at `import var_model`: the CLI and
`varscale fit` import `var_model.errors` (which runs this file first), and that must not cost
them torch (2-3 s).
"""

from __future__ import annotations

import importlib

# Each public name and the module that defines it.
_EXPORTS = {
    "VAR": "var",
    "VARConfig": "config",
    "VQVAE": "vqvae",
    "VQVAEConfig": "config",
    "build_var": "var",
    "load_official": "official",
    "save_official": "official",
    "VarScaleError": "errors",
    "ConfigError": "errors",
    "CheckpointError": "errors",
    "DataError": "errors",
    "TrialError": "errors",
    "DivergenceError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'var_model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"var_model.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
