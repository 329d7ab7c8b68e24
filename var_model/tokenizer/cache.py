"""The token cache: every image tokenised once by the frozen tokenizer, reused by every trial.

Layout of one cache directory (`<cache_root>/tokens-<key[:16]>/`):

    manifest.json        key, tokenizer hash, data identity, geometry, rows, per-file sha256
    tokenizer.pt         the tokenizer itself (trials need its embedding for teacher forcing)
    train_indices.npy    (crops * images, L) int16 (int32 if V > 32768): all scales, concatenated
    train_labels.npy     (crops * images,) int32; rows are crop-major (crop 0 of every image first)
    test_indices.npy     (images, L), centre crop
    test_labels.npy      (images,)

The key is the sha256 of (format, tokenizer content hash, data identity): a different
tokenizer or different data gives a different directory, so a finished cache is never
rewritten under a trial that reads it. A build writes into a temporary sibling and renames it
into place (atomic on one filesystem): a concurrent reader sees the whole cache or none, and
two concurrent builders of the same key both end with one complete cache. `TokenCache.open`
checks every file against the manifest's checksums: a corrupt file is a `DataError`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from var_model.config import VQVAEConfig
from var_model.data.config import DataConfig
from var_model.data.source import SPLITS, ImageSource, images_to_model_input
from var_model.errors import DataError
from var_model.files import file_sha256, json_sha256
from var_model.tokenizer.weights import TOKENIZER_FILE, load_tokenizer, save_tokenizer, tokenizer_hash
from var_model.vqvae import VQVAE

CACHE_FORMAT = 1
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class CacheBuild:
    """What `build_token_cache` did: the cache's path and key, whether an existing cache was
    reused, and the build's time and throughput (0 when reused)."""

    path: Path
    key: str
    reused: bool
    seconds: float
    images_per_second: float
    skipped: tuple[str, ...] = ()


def token_cache_key(vqvae: VQVAE, source: ImageSource) -> str:
    identity = {"format": CACHE_FORMAT, "tokenizer": tokenizer_hash(vqvae), "data": source.identity()}
    return json_sha256(identity)


def build_token_cache(
    vqvae: VQVAE,
    data: DataConfig | ImageSource,
    cache_root: str | os.PathLike[str],
    batch_size: int = 128,
    device: torch.device | str = "cpu",
) -> CacheBuild:
    """Tokenise `data` with `vqvae` into `cache_root`, or reuse the cache with the same key.

    A directory with the right key that fails verification (a corrupt or truncated file) is
    moved aside to `<name>.corrupt-<id>` and rebuilt."""
    source = data if isinstance(data, ImageSource) else ImageSource(data)
    if vqvae.config.image_size != source.config.resolution:
        raise DataError(
            f"tokenizer image_size {vqvae.config.image_size} does not match data.resolution {source.config.resolution}"
        )
    cache_root = Path(cache_root)
    cache_root.mkdir(parents=True, exist_ok=True)
    key = token_cache_key(vqvae, source)
    final = cache_root / f"tokens-{key[:16]}"
    if final.exists():
        try:
            TokenCache.open(final, verify=True)
            return CacheBuild(final, key, reused=True, seconds=0.0, images_per_second=0.0)
        except DataError:
            final.rename(final.with_name(f"{final.name}.corrupt-{uuid.uuid4().hex[:8]}"))
    temporary = cache_root / f".building-{final.name}-{uuid.uuid4().hex[:8]}"
    temporary.mkdir()
    try:
        started = time.perf_counter()
        manifest = _write_cache(vqvae, source, temporary, key, batch_size, torch.device(device))
        seconds = time.perf_counter() - started
        try:
            os.rename(temporary, final)
        except OSError:
            # another process finished the same key first; its cache is identical
            shutil.rmtree(temporary, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    encoded = sum(split["rows"] for split in manifest["splits"].values())
    return CacheBuild(
        final,
        key,
        reused=False,
        seconds=seconds,
        images_per_second=encoded / max(seconds, 1e-9),
        skipped=tuple(manifest["skipped"]),
    )


def _write_cache(
    vqvae: VQVAE, source: ImageSource, directory: Path, key: str, batch_size: int, device: torch.device
) -> dict[str, Any]:
    config = vqvae.config
    length = config.sequence_length
    index_dtype = np.int16 if config.codebook_size <= 2**15 else np.int32
    vqvae = vqvae.to(device).eval()
    splits: dict[str, Any] = {}
    for split in SPLITS:
        crops = source.crops_per_image(split)
        capacity = source.num_images(split)
        indices_path = directory / f"{split}_indices.npy"
        indices = np.lib.format.open_memmap(
            indices_path, mode="w+", dtype=index_dtype, shape=(crops * capacity, length)
        )
        labels = np.empty(crops * capacity, dtype=np.int32)
        valid = capacity
        for crop in range(crops):
            row = crop * capacity
            for images_NHWC, labels_N in source.iterate(split, batch_size, crop_index=crop):
                with torch.no_grad():
                    scale_indices = vqvae.encode_indices(images_to_model_input(images_NHWC, device))
                block = torch.cat(scale_indices, dim=1).cpu().numpy().astype(index_dtype)
                indices[row : row + len(block)] = block
                labels[row : row + len(block)] = labels_N
                row += len(block)
            valid = row - crop * capacity  # unreadable files are skipped in every crop alike
        if valid == 0:
            raise DataError(f"no readable images in the {split} split; skipped: {source.skipped()[:3]}")
        indices.flush()
        if valid < capacity:
            # compact the crop blocks, dropping the rows of skipped files
            kept = np.concatenate([np.arange(c * capacity, c * capacity + valid) for c in range(crops)])
            compact = np.array(indices[kept])
            del indices
            np.save(indices_path, compact)
            labels = labels[kept]
        else:
            del indices
        np.save(directory / f"{split}_labels.npy", labels[: crops * valid])
        splits[split] = {"rows": crops * valid, "images": valid, "crops_per_image": crops}
    save_tokenizer(vqvae, directory / TOKENIZER_FILE)
    manifest = {
        "format": CACHE_FORMAT,
        "key": key,
        "tokenizer_hash": tokenizer_hash(vqvae),
        "tokenizer_config": config.to_dict(),
        "data": source.identity(),
        "class_names": source.class_names,
        "num_classes": source.num_classes,
        "patch_nums": list(config.patch_nums),
        "codebook_size": config.codebook_size,
        "sequence_length": length,
        "index_dtype": np.dtype(index_dtype).name,
        "splits": splits,
        "skipped": source.skipped(),
        "files": {
            path.name: {"sha256": file_sha256(path), "bytes": path.stat().st_size}
            for path in sorted(directory.iterdir())
        },
    }
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def resolve_cache_path(path: str | os.PathLike[str]) -> Path:
    """A cache directory, or a cache root holding exactly one cache (`tokens-*`): then that
    one. A root with several caches is ambiguous: the error lists them."""
    path = Path(path)
    if (path / MANIFEST_FILE).is_file() or not path.is_dir():
        return path
    caches = sorted(
        child
        for child in path.glob("tokens-*")
        if child.is_dir() and "." not in child.name and (child / MANIFEST_FILE).is_file()
    )
    if len(caches) == 1:
        return caches[0]
    if len(caches) > 1:
        raise DataError(
            f"{path} holds {len(caches)} token caches ({', '.join(c.name for c in caches)}); "
            "name one of them as token_cache"
        )
    return path


class TokenCache:
    """A verified, read-only token cache. Arrays are memory-mapped: opening costs a checksum
    pass over the files (verify=True), not a copy."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._arrays: dict[str, np.ndarray] = {}

    @classmethod
    def open(cls, path: str | os.PathLike[str], verify: bool = True) -> "TokenCache":
        path = resolve_cache_path(path)
        manifest_path = path / MANIFEST_FILE
        if not manifest_path.is_file():
            raise DataError(
                f"{path} is not a token cache (no {MANIFEST_FILE}); build one with "
                "`varscale tokenizer` or var_model.tokenizer.build_token_cache"
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise DataError(f"token cache manifest {manifest_path} is corrupt: {error}") from error
        if manifest.get("format") != CACHE_FORMAT:
            raise DataError(f"token cache {path} has format {manifest.get('format')}; this code reads {CACHE_FORMAT}")
        for name, expected in manifest["files"].items():
            file_path = path / name
            if not file_path.is_file():
                raise DataError(f"token cache file {file_path} is missing; rebuild the cache")
            if file_path.stat().st_size != expected["bytes"]:
                raise DataError(
                    f"token cache file {file_path} has {file_path.stat().st_size} bytes, the manifest "
                    f"says {expected['bytes']}: it is truncated or corrupt; delete {path} and rebuild"
                )
            if verify and file_sha256(file_path) != expected["sha256"]:
                raise DataError(
                    f"token cache file {file_path} fails its checksum: it is corrupt; delete {path} and rebuild"
                )
        return cls(path, manifest)

    # ---- geometry, from the manifest
    @property
    def key(self) -> str:
        return self.manifest["key"]

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return tuple(self.manifest["patch_nums"])

    @property
    def sequence_length(self) -> int:
        return int(self.manifest["sequence_length"])

    @property
    def codebook_size(self) -> int:
        return int(self.manifest["codebook_size"])

    @property
    def num_classes(self) -> int:
        return int(self.manifest["num_classes"])

    @property
    def tokenizer_config(self) -> VQVAEConfig:
        return VQVAEConfig.from_dict(self.manifest["tokenizer_config"])

    def crops_per_image(self, split: str) -> int:
        return int(self.manifest["splits"][split]["crops_per_image"])

    def images(self, split: str) -> int:
        return int(self.manifest["splits"][split]["images"])

    # ---- contents
    def indices(self, split: str) -> np.ndarray:
        """(rows, L) token indices of a split, memory-mapped read-only."""
        return self._load(f"{split}_indices")

    def labels(self, split: str) -> np.ndarray:
        return self._load(f"{split}_labels")

    def load_tokenizer(self, device: torch.device | str = "cpu") -> VQVAE:
        return load_tokenizer(self.path / TOKENIZER_FILE, device)

    def _load(self, name: str) -> np.ndarray:
        if name.split("_")[0] not in SPLITS:
            raise DataError(f"split {name.split('_')[0]!r} is not one of {SPLITS}")
        if name not in self._arrays:
            self._arrays[name] = np.load(self.path / f"{name}.npy", mmap_mode="r")
        return self._arrays[name]
