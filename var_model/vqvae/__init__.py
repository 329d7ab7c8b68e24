"""The multi-scale VQVAE tokenizer (VAR_SPEC §1)."""

from var_model.vqvae.quantizer import MultiScaleQuantizer, phi_index_map
from var_model.vqvae.vqvae import VQVAE

__all__ = ["VQVAE", "MultiScaleQuantizer", "phi_index_map"]
