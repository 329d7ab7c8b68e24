"""The tokenizer stage of a study: get a tokenizer (train or load), then build the token cache.

    result = run_tokenizer_stage(TokenizerStageConfig.from_dict(yaml_mapping))
    result.cache_path   # -> TrialConfig.token_cache of every trial of the study

Both products are content-addressed under `cache_root`, so a relaunched study (or a second
study on the same data and tokenizer) reuses them:
- `tokenizer-<hash>/tokenizer.pt` + `report.json`, keyed by (data identity, VQVAE config,
  training config) for a trained tokenizer, or by the file's bytes for official weights;
- `tokens-<hash>/`, keyed by the tokenizer's weights and the data (see tokenizer/cache.py).

The directory of a tokenizer also records its content hash (`tokenizer.sha256`, the hash that
keys its token cache), checked whenever the tokenizer is reused: a tokenizer.pt changed on disk
(a probe flipped 256 bytes, and a relaunch silently built a second cache from it and trained on
it beside the first) is refused with both hashes, never tokenised with. `cache_key` in the
result names the one cache of a study: trials that report another were trained on other tokens.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from var_model.config import VQVAEConfig
from var_model.data.config import DataConfig
from var_model.data.source import ImageSource
from var_model.errors import CheckpointError, ConfigError
from var_model.files import atomic_write_text, file_sha256, json_sha256
from var_model.official import check_state_dict, infer_vqvae_config, read_state_dict
from var_model.tokenizer.baseline import stored_unigram_baselines
from var_model.tokenizer.cache import TokenCache, build_token_cache
from var_model.tokenizer.training import TokenizerTrainingConfig, evaluate_tokenizer, train_tokenizer
from var_model.tokenizer.weights import TOKENIZER_FILE, freeze, load_tokenizer, save_tokenizer, tokenizer_hash
from var_model.training.distributed import resolve_device
from var_model.vqvae import VQVAE

TOKENIZER_KINDS = ("train", "load_official")
REPORT_FILE = "report.json"
TOKENIZER_HASH_FILE = "tokenizer.sha256"


@dataclass(frozen=True)
class TokenizerStageConfig:
    """data: DataConfig. vqvae: VQVAEConfig (its image_size must equal data.resolution).
    kind: "train" or "load_official" (then `vqvae_path` names the released
    vae_ch160v4096z32.pth; its architecture is inferred from the file, `vqvae` only gives
    patch_nums). training: TokenizerTrainingConfig. cache_root: where tokenizers and token
    caches live. encode_batch_size, device ("auto"/"cpu"/"cuda"), threads (0 = torch default)."""

    data: DataConfig
    vqvae: VQVAEConfig
    cache_root: str
    kind: str = "train"
    training: TokenizerTrainingConfig = field(default_factory=TokenizerTrainingConfig)
    vqvae_path: str | None = None
    encode_batch_size: int = 128
    device: str = "auto"
    threads: int = 1

    def __post_init__(self) -> None:
        if self.kind not in TOKENIZER_KINDS:
            raise ConfigError(f"tokenizer kind is {self.kind!r}; allowed: {', '.join(TOKENIZER_KINDS)}")
        if self.kind == "load_official" and not self.vqvae_path:
            raise ConfigError("tokenizer kind 'load_official' needs vqvae_path (the released VQVAE .pth)")
        if self.kind == "train" and self.vqvae.image_size != self.data.resolution:
            raise ConfigError(
                f"vqvae.image_size {self.vqvae.image_size} differs from data.resolution "
                f"{self.data.resolution}; they must be equal"
            )
        if not isinstance(self.cache_root, str) or not self.cache_root:
            raise ConfigError(f"cache_root is {self.cache_root!r}; it must be a directory path")
        for name, minimum in (("encode_batch_size", 1), ("threads", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < minimum:
                raise ConfigError(f"{name} is {value!r}; it must be an integer >= {minimum}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TokenizerStageConfig":
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown tokenizer stage keys {unknown}; allowed: {sorted(known)}")
        values = dict(values)
        if "data" not in values or "cache_root" not in values:
            raise ConfigError("tokenizer stage config needs 'data' and 'cache_root'")
        values["data"] = DataConfig.from_dict(values["data"] or {})
        vqvae = values.get("vqvae", "debug")
        if vqvae == "debug":
            vqvae = VQVAEConfig.debug()
        elif isinstance(vqvae, dict):
            vqvae = VQVAEConfig.from_dict(vqvae)
        else:
            raise ConfigError(f"vqvae is {vqvae!r}; give 'debug' or a mapping of VQVAEConfig fields")
        values["vqvae"] = vqvae
        training = values.get("training") or {}
        known_training = {item.name for item in dataclasses.fields(TokenizerTrainingConfig)}
        unknown = sorted(set(training) - known_training)
        if unknown:
            raise ConfigError(f"unknown tokenizer training keys {unknown}; allowed: {sorted(known_training)}")
        values["training"] = TokenizerTrainingConfig(**training)
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> "TokenizerStageConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"tokenizer stage file {path} does not exist")
        return cls.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {})

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data.to_dict(),
            "vqvae": self.vqvae.to_dict(),
            "cache_root": self.cache_root,
            "kind": self.kind,
            "training": self.training.to_dict(),
            "vqvae_path": self.vqvae_path,
            "encode_batch_size": self.encode_batch_size,
            "device": self.device,
            "threads": self.threads,
        }


@dataclass(frozen=True)
class TokenizerStageResult:
    """cache_path: the token cache for TrialConfig.token_cache. tokenizer_path: its
    tokenizer.pt. report: reconstruction MSE/PSNR and per-scale codebook usage. baselines:
    the cache's unigram test losses (see tokenizer/baseline.py). reused_tokenizer / reused_cache:
    whether existing products were found. cache_key: the cache's identity (TokenCache.key, which
    each trial reports as `cache_key` in its start info and result); tokenizer_hash: the
    tokenizer's content hash, which keys the cache."""

    cache_path: str
    cache_key: str
    tokenizer_path: str
    tokenizer_hash: str
    report: dict[str, Any]
    baselines: dict[str, float]
    reused_tokenizer: bool
    reused_cache: bool
    cache_build_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_tokenizer_stage(
    config: TokenizerStageConfig,
    log: Callable[[dict[str, float]], None] | None = None,
    source: ImageSource | None = None,
    before_encoding: Callable[[], None] | None = None,
) -> TokenizerStageResult:
    """`source`: the ImageSource of `config.data`, when the caller has one already (its
    synthetic images are generated once, not once per user). `before_encoding`: called once the
    tokenizer is ready, before the token cache is built (a caller that runs work beside the
    tokenizer's training waits for it there and gives the encoding its threads)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    if source is None:
        source = ImageSource(config.data)
    elif source.config != config.data:
        raise ConfigError("run_tokenizer_stage got an ImageSource of other data than config.data")
    cache_root = Path(config.cache_root)
    vqvae, tokenizer_path, report, reused_tokenizer = _obtain_tokenizer(config, source, cache_root, device, log)
    if before_encoding is not None:
        before_encoding()
    build = build_token_cache(vqvae, source, cache_root, batch_size=config.encode_batch_size, device=device)
    baselines = stored_unigram_baselines(TokenCache.open(build.path, verify=False))
    return TokenizerStageResult(
        cache_path=str(build.path),
        cache_key=build.key,
        tokenizer_path=str(tokenizer_path),
        tokenizer_hash=tokenizer_hash(vqvae),
        report=report,
        baselines=baselines,
        reused_tokenizer=reused_tokenizer,
        reused_cache=build.reused,
        cache_build_seconds=build.seconds,
    )


def _obtain_tokenizer(
    config: TokenizerStageConfig,
    source: ImageSource,
    cache_root: Path,
    device: torch.device,
    log: Callable[[dict[str, float]], None] | None,
) -> tuple[VQVAE, Path, dict[str, Any], bool]:
    if config.kind == "train":
        identity = {"data": source.identity(), "vqvae": config.vqvae.to_dict(), "training": config.training.to_dict()}
    else:
        identity = {
            "official_file_sha256": _official_file_sha256(Path(config.vqvae_path)),
            "patch_nums": list(config.vqvae.patch_nums),
            "data": source.identity(),
        }
    key = json_sha256(identity)
    directory = cache_root / f"tokenizer-{key[:16]}"
    if (directory / TOKENIZER_FILE).is_file() and (directory / REPORT_FILE).is_file():
        report = json.loads((directory / REPORT_FILE).read_text(encoding="utf-8"))
        vqvae = load_tokenizer(directory / TOKENIZER_FILE, device)
        _check_recorded_hash(directory, vqvae)
        return vqvae, directory / TOKENIZER_FILE, report, True
    if config.kind == "train":
        # Seed the initial weights too (train_tokenizer seeds only what follows): the study's
        # tokens, and so every trial's numbers, must be a function of the study file.
        torch.manual_seed(config.training.seed)
        vqvae = VQVAE(config.vqvae)
        report = train_tokenizer(vqvae, source, config.training, device, log).to_dict()
    else:
        vqvae = load_official_tokenizer(config.vqvae_path, config.vqvae.patch_nums, device)
        report = dict(evaluate_tokenizer(vqvae, source, config.training.eval_images, config.encode_batch_size, device))
    freeze(vqvae)
    # write into a temporary sibling, then rename: a concurrent stage sees all or nothing
    cache_root.mkdir(parents=True, exist_ok=True)
    temporary = cache_root / f".building-{directory.name}-{uuid.uuid4().hex[:8]}"
    temporary.mkdir()
    save_tokenizer(vqvae, temporary / TOKENIZER_FILE)
    (temporary / REPORT_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")
    (temporary / TOKENIZER_HASH_FILE).write_text(tokenizer_hash(vqvae) + "\n", encoding="utf-8")
    try:
        os.rename(temporary, directory)
    except OSError:
        shutil.rmtree(temporary, ignore_errors=True)  # another process won; same content
    return vqvae, directory / TOKENIZER_FILE, report, False


def _check_recorded_hash(directory: Path, vqvae: VQVAE) -> None:
    """Refuse a reused tokenizer whose weights no longer hash as when the stage wrote them."""
    recorded_path = directory / TOKENIZER_HASH_FILE
    loaded = tokenizer_hash(vqvae)
    if not recorded_path.is_file():
        # written before hashes were recorded: from now on, changes to it are caught
        warnings.warn(
            f"tokenizer {directory / TOKENIZER_FILE} has no recorded hash (written by an older varscale); "
            f"recording {loaded} as its hash now, unchecked",
            stacklevel=3,
        )
        atomic_write_text(recorded_path, loaded + "\n")
        return
    recorded = recorded_path.read_text(encoding="utf-8").strip()
    if recorded != loaded:
        raise CheckpointError(
            f"tokenizer file {directory / TOKENIZER_FILE} has changed since the stage wrote it: its weights "
            f"hash to {loaded}, but {recorded_path.name} recorded {recorded}. A token cache built from it "
            f"would differ from the one this study's trials were trained on. Restore the file, or delete "
            f"{directory} to train the tokenizer again (with a new token cache, so start the study anew)"
        )


def load_official_tokenizer(path: str, patch_nums: tuple[int, ...], device: torch.device) -> VQVAE:
    """The released VQVAE alone (architecture inferred from the file's shapes)."""
    state = read_state_dict(path, "VQVAE")
    vqvae = VQVAE(infer_vqvae_config(state, patch_nums))
    check_state_dict(vqvae, state, "VQVAE")
    vqvae.load_state_dict(
        {name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in state.items()}, strict=True
    )
    return vqvae.to(device)


def _official_file_sha256(path: Path) -> str:
    if not path.is_file():
        raise ConfigError(f"vqvae_path {path} does not exist")
    return file_sha256(path)
