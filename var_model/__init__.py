"""var_model: a faithful VAR (next-scale prediction) and its multi-scale VQVAE tokenizer.

Tiny CPU example:
    >>> import torch
    >>> from var_model import VQVAE, VQVAEConfig, VAR, VARConfig
    >>> vqvae = VQVAE(VQVAEConfig.debug())
    >>> var = VAR(VARConfig.debug(), vqvae=vqvae)
    >>> idx_list = vqvae.encode_indices(torch.rand(2, 3, 32, 32) * 2 - 1)
    >>> var(torch.tensor([1, 2]), vqvae.teacher_forcing_input(idx_list)).shape
    torch.Size([2, 21, 64])
"""

from var_model.config import VARConfig, VQVAEConfig
from var_model.errors import CheckpointError, ConfigError, DataError, DivergenceError, TrialError, VarScaleError
from var_model.official import load_official, save_official
from var_model.var import VAR, build_var
from var_model.vqvae import VQVAE

__all__ = [
    "VAR",
    "VARConfig",
    "VQVAE",
    "VQVAEConfig",
    "build_var",
    "load_official",
    "save_official",
    "VarScaleError",
    "ConfigError",
    "CheckpointError",
    "DataError",
    "TrialError",
    "DivergenceError",
]
