"""The multi-scale VQVAE tokenizer (docs/MODEL.md §1)."""

from var_model.vqvae.quantizer import MultiScaleQuantizer, phi_index_map
from var_model.vqvae.vqvae import VQVAE

__all__ = ["VQVAE", "MultiScaleQuantizer", "phi_index_map"]
