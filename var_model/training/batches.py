"""Training batches from a token cache: a seeded permutation per epoch, and the VAR's inputs.

The data position is just (epoch, offset): the permutation of an epoch is derived from
(seed, epoch), so a checkpoint needs no generator state to resume mid-epoch exactly. Epoch e
reads crop e mod crops_per_image of every image, the cached stand-in for the paper's fresh
random crop each epoch. The last partial batch of an epoch is dropped (every step sees a full
batch, so step cost and FLOP counters stay exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from var_model.errors import ConfigError
from var_model.tokenizer.cache import TokenCache
from var_model.vqvae import VQVAE

# Caches below this size are read into memory once (random row access on a memory map costs
# a page fault per row); larger ones stay memory-mapped.
IN_MEMORY_BYTES = 1 << 30


@dataclass
class DataPosition:
    epoch: int = 0
    offset: int = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}


class TokenBatches:
    """Global batches of (indices (B, L) int64, labels (B,) int64) from the train split."""

    def __init__(self, cache: TokenCache, batch_size: int, seed: int) -> None:
        self.indices = cache.indices("train")
        self.labels = cache.labels("train")
        if self.indices.nbytes < IN_MEMORY_BYTES:
            self.indices = np.asarray(self.indices)
        self.images = cache.images("train")
        self.crops = cache.crops_per_image("train")
        if batch_size > self.images:
            raise ConfigError(f"batch_size {batch_size} exceeds the {self.images} training images of the cache")
        self.batch_size = batch_size
        self.seed = seed
        self.position = DataPosition()
        self._permutation_epoch = -1
        self._permutation = np.empty(0, dtype=np.int64)

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position = DataPosition(epoch=int(state["epoch"]), offset=int(state["offset"]))

    def _epoch_permutation(self) -> np.ndarray:
        if self._permutation_epoch != self.position.epoch:
            generator = np.random.default_rng([self.seed, self.position.epoch])
            self._permutation = generator.permutation(self.images)
            self._permutation_epoch = self.position.epoch
        return self._permutation

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.position.offset + self.batch_size > self.images:
            self.position = DataPosition(epoch=self.position.epoch + 1, offset=0)
        permutation = self._epoch_permutation()
        chosen = permutation[self.position.offset : self.position.offset + self.batch_size]
        rows = (self.position.epoch % self.crops) * self.images + chosen
        self.position.offset += self.batch_size
        indices = torch.from_numpy(np.asarray(self.indices[rows], dtype=np.int64))
        labels = torch.from_numpy(np.asarray(self.labels[rows], dtype=np.int64))
        return indices, labels


def split_scales(indices_BL: torch.Tensor, patch_nums: tuple[int, ...]) -> list[torch.Tensor]:
    """(B, L) concatenated indices -> one (B, pn*pn) tensor per scale."""
    return list(torch.split(indices_BL, [pn * pn for pn in patch_nums], dim=1))


@torch.no_grad()
def teacher_forcing_batch(vqvae: VQVAE, indices_BL: torch.Tensor) -> torch.Tensor:
    """VAR input (B, L - pn0^2, Cvae) from cached indices: an embedding lookup, the phi convs
    and resizes on the small latent, no encoder pass. Run in float32 outside any autocast
    (the tokenizer is frozen and cheap; its output is the model's input precision)."""
    with torch.autocast(device_type=indices_BL.device.type, enabled=False):
        return vqvae.teacher_forcing_input(split_scales(indices_BL, vqvae.config.patch_nums))
