"""Frozen, validated configurations of the two models: the multi-scale VQVAE and the VAR.

Defaults reproduce the released 256px models (docs/MODEL.md §1-2). `debug()` gives a
tiny size that trains on a CPU in seconds. Fields left as None are resolved from `depth` in
`__post_init__` (width 64*depth, heads = depth, drop-path 0.1*depth/24, AdaLN gamma init by
depth), so a config read back from a dict is identical to the one written.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from var_model.errors import ConfigError

PATCH_NUMS_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
PATCH_NUMS_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
GROUP_NORM_GROUPS = 32  # the LDM conv nets normalise with 32 groups


def sequence_length(patch_nums: tuple[int, ...]) -> int:
    """Tokens per image: L = sum of pn^2 over the scales (680 for PATCH_NUMS_256)."""
    return sum(p * p for p in patch_nums)


def _require(condition: bool, field_name: str, value: Any, allowed: str) -> None:
    if not condition:
        raise ConfigError(f"{field_name}={value!r} is not allowed: {allowed}")


def _validate_latent_space(codebook_size: Any, latent_channels: Any) -> None:
    """The tokenizer's token space, which the VQVAE and the VAR must both declare the same way."""
    _require(isinstance(codebook_size, int) and codebook_size >= 2, "codebook_size", codebook_size, "an integer >= 2")
    positive = isinstance(latent_channels, int) and latent_channels >= 1
    _require(positive, "latent_channels", latent_channels, "a positive integer")


def _validate_patch_nums(patch_nums: Any) -> tuple[int, ...]:
    _require(
        isinstance(patch_nums, (tuple, list))
        and len(patch_nums) >= 1
        and all(isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in patch_nums),
        "patch_nums",
        patch_nums,
        "a non-empty sequence of positive integers",
    )
    _require(
        all(a < b for a, b in zip(patch_nums, patch_nums[1:], strict=False)),
        "patch_nums",
        patch_nums,
        "scales must be strictly increasing, e.g. (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)",
    )
    return tuple(patch_nums)


def _from_dict(cls, data: dict[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s) {unknown}; allowed: {sorted(known)}")
    return cls(**data)


@dataclass(frozen=True)
class VQVAEConfig:
    """The multi-scale VQVAE tokenizer (LDM vq-f16 conv nets + residual quantizer).

    image_size / 2**(len(channel_multipliers) - 1) is the latent side, which must equal the
    last of `patch_nums`.
    """

    image_size: int = 256
    channels: int = 160
    channel_multipliers: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2  # the decoder uses one more per level, as in LDM
    codebook_size: int = 4096
    latent_channels: int = 32
    patch_nums: tuple[int, ...] = PATCH_NUMS_256
    share_quant_resi: int = 4  # 0: one phi per scale, 1: one shared phi, k>=2: k phis by tick
    quant_resi: float = 0.5  # phi(h) = (1 - quant_resi) * h + quant_resi * conv(h)
    beta: float = 0.25  # commitment weight of the quantizer loss
    dropout: float = 0.0
    use_attention: bool = True  # single-head conv attention at the deepest level
    use_mid_attention: bool = True  # ... and in the middle blocks
    in_channels: int = 3
    # GroupNorm groups in the conv nets. 32 is LDM's and the released weights'. With 32 channels
    # (the debug preset) 32 groups make every GroupNorm an instance norm: it removes each
    # channel's per-image mean, so neither latent nor output carries an image's colours (test
    # MSE 0.211 / 0.171 after 100 / 200 steps on the demo's data, against 0.183 / 0.127 with 8
    # groups; docs/SAMPLE_QUALITY.md).
    norm_groups: int = GROUP_NORM_GROUPS

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_nums", _validate_patch_nums(self.patch_nums))
        _require(
            isinstance(self.norm_groups, int) and not isinstance(self.norm_groups, bool) and self.norm_groups >= 1,
            "norm_groups",
            self.norm_groups,
            "a positive integer",
        )
        _require(
            isinstance(self.channel_multipliers, (tuple, list))
            and len(self.channel_multipliers) >= 1
            and all(isinstance(m, int) and m >= 1 for m in self.channel_multipliers),
            "channel_multipliers",
            self.channel_multipliers,
            "a non-empty sequence of positive integers",
        )
        object.__setattr__(self, "channel_multipliers", tuple(self.channel_multipliers))
        _require(
            isinstance(self.channels, int)
            and self.channels >= self.norm_groups
            and self.channels % self.norm_groups == 0,
            "channels",
            self.channels,
            f"a positive multiple of norm_groups {self.norm_groups} (GroupNorm uses {self.norm_groups} groups)",
        )
        _require(
            isinstance(self.num_res_blocks, int) and self.num_res_blocks >= 1,
            "num_res_blocks",
            self.num_res_blocks,
            "an integer >= 1",
        )
        _validate_latent_space(self.codebook_size, self.latent_channels)
        _require(
            isinstance(self.share_quant_resi, int) and self.share_quant_resi >= 0,
            "share_quant_resi",
            self.share_quant_resi,
            "0 (one phi per scale), 1 (one shared phi) or k >= 2 (k partially shared phis)",
        )
        _require(0.0 <= self.quant_resi <= 1.0, "quant_resi", self.quant_resi, "a number in [0, 1]")
        _require(self.beta >= 0.0, "beta", self.beta, "a non-negative number")
        _require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "a number in [0, 1)")
        downsample = 2 ** (len(self.channel_multipliers) - 1)
        _require(
            isinstance(self.image_size, int) and self.image_size >= 1 and self.image_size % downsample == 0,
            "image_size",
            self.image_size,
            f"a positive multiple of {downsample} (2 ** (len(channel_multipliers) - 1))",
        )
        _require(
            self.patch_nums[-1] == self.latent_size,
            "patch_nums",
            self.patch_nums,
            f"the last scale must equal the latent side {self.latent_size} "
            f"(image_size {self.image_size} / downsampling {downsample})",
        )

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.channel_multipliers) - 1)

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    @property
    def sequence_length(self) -> int:
        return sequence_length(self.patch_nums)

    @classmethod
    def debug(cls) -> "VQVAEConfig":
        """A tiny tokenizer for CPU tests: 32x32 images, 4x4 latent, 64 codes of dim 8."""
        return cls(
            image_size=32,
            channels=32,
            channel_multipliers=(1, 1, 2, 2),
            num_res_blocks=1,
            codebook_size=64,
            latent_channels=8,
            patch_nums=(1, 2, 4),
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["patch_nums"] = list(self.patch_nums)
        data["channel_multipliers"] = list(self.channel_multipliers)
        if self.norm_groups == GROUP_NORM_GROUPS:
            # Written only when it differs: the dict keys the tokenizer and its token cache, and a
            # tokenizer trained before the field existed must keep its key (a relaunch of its
            # study would otherwise retrain it, then refuse the finished trials' other cache).
            del data["norm_groups"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VQVAEConfig":
        data = dict(data)
        for key in ("patch_nums", "channel_multipliers"):
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        return _from_dict(cls, data)


def default_init_adaln_gamma(depth: int) -> float:
    """The released recipes' AdaLN gamma init: 1e-3 up to d20, 1e-4 for d24, 1e-5 beyond."""
    if depth <= 20:
        return 1e-3
    if depth <= 24:
        return 1e-4
    return 1e-5


@dataclass(frozen=True)
class VARConfig:
    """The VAR transformer. One knob sets its size: `depth` (width 64*depth, heads = depth)."""

    depth: int = 16
    width: int | None = None  # None -> 64 * depth
    num_heads: int | None = None  # None -> depth (head dim 64)
    num_classes: int = 1000
    codebook_size: int = 4096
    latent_channels: int = 32
    patch_nums: tuple[int, ...] = PATCH_NUMS_256
    mlp_ratio: float = 4.0
    drop_path_rate: float | None = None  # None -> 0.1 * depth / 24
    class_dropout: float = 0.1
    attn_l2_norm: bool = True
    shared_adaln: bool = False
    init_adaln: float = 0.5
    init_head: float = 0.02
    init_adaln_gamma: float | None = None  # None -> default_init_adaln_gamma(depth)
    init_std: float | None = None  # None -> sqrt(1 / (3 * width))
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        _require(
            isinstance(self.depth, int) and not isinstance(self.depth, bool) and self.depth >= 1,
            "depth",
            self.depth,
            "an integer >= 1",
        )
        if self.width is None:
            object.__setattr__(self, "width", 64 * self.depth)
        if self.num_heads is None:
            object.__setattr__(self, "num_heads", self.depth)
        if self.drop_path_rate is None:
            object.__setattr__(self, "drop_path_rate", 0.1 * self.depth / 24)
        if self.init_adaln_gamma is None:
            object.__setattr__(self, "init_adaln_gamma", default_init_adaln_gamma(self.depth))
        if self.init_std is None:
            object.__setattr__(self, "init_std", math.sqrt(1.0 / (3.0 * self.width)))
        object.__setattr__(self, "patch_nums", _validate_patch_nums(self.patch_nums))
        _require(isinstance(self.width, int) and self.width >= 1, "width", self.width, "a positive integer")
        _require(
            isinstance(self.num_heads, int) and self.num_heads >= 1 and self.width % self.num_heads == 0,
            "num_heads",
            self.num_heads,
            f"a positive divisor of width {self.width}",
        )
        _require(
            isinstance(self.num_classes, int) and self.num_classes >= 1,
            "num_classes",
            self.num_classes,
            "a positive integer",
        )
        _validate_latent_space(self.codebook_size, self.latent_channels)
        _require(self.mlp_ratio > 0, "mlp_ratio", self.mlp_ratio, "a positive number")
        _require(0.0 <= self.drop_path_rate < 1.0, "drop_path_rate", self.drop_path_rate, "a number in [0, 1)")
        _require(0.0 <= self.class_dropout < 1.0, "class_dropout", self.class_dropout, "a number in [0, 1)")
        _require(self.norm_eps > 0, "norm_eps", self.norm_eps, "a positive number")
        _require(self.init_std > 0, "init_std", self.init_std, "a positive number")
        for name in ("init_adaln", "init_head", "init_adaln_gamma"):
            _require(getattr(self, name) >= 0, name, getattr(self, name), "a non-negative number")

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    @property
    def ffn_hidden(self) -> int:
        return round(self.width * self.mlp_ratio)

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    @property
    def sequence_length(self) -> int:
        """L = sum of pn^2 over scales (680 for 256px)."""
        return sequence_length(self.patch_nums)

    @property
    def first_length(self) -> int:
        """Tokens of the first scale, predicted from the class token alone (1 for 256px)."""
        return self.patch_nums[0] ** 2

    @classmethod
    def debug(cls, **overrides: Any) -> "VARConfig":
        """A tiny VAR for CPU tests, matching `VQVAEConfig.debug()` (64 codes of dim 8, (1, 2, 4))."""
        base = dict(
            depth=2, width=64, num_heads=2, num_classes=10, codebook_size=64, latent_channels=8, patch_nums=(1, 2, 4)
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def for_vqvae(cls, vqvae_config: VQVAEConfig, **fields: Any) -> "VARConfig":
        """A VAR config whose codebook, latent channels and scales match the given tokenizer."""
        return cls(
            codebook_size=vqvae_config.codebook_size,
            latent_channels=vqvae_config.latent_channels,
            patch_nums=vqvae_config.patch_nums,
            **fields,
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["patch_nums"] = list(self.patch_nums)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VARConfig":
        data = dict(data)
        if isinstance(data.get("patch_nums"), list):
            data["patch_nums"] = tuple(data["patch_nums"])
        return _from_dict(cls, data)


def check_compatible(vqvae_config: VQVAEConfig, var_config: VARConfig) -> None:
    """Raise ConfigError unless the VAR predicts the tokens this VQVAE produces."""
    for name in ("codebook_size", "latent_channels", "patch_nums"):
        ours, theirs = getattr(var_config, name), getattr(vqvae_config, name)
        if ours != theirs:
            raise ConfigError(
                f"VARConfig.{name}={ours!r} does not match VQVAEConfig.{name}={theirs!r}; "
                f"build the VAR config with VARConfig.for_vqvae(vqvae_config, depth=...)"
            )
