"""`EvaluationConfig`: the sample-quality protocol of a trial, as a frozen, validated dataclass.

    evaluation:                   # TrialConfig.evaluation (a mapping of these fields)
      samples_per_class: 10       # K samples per class (K >= 2: a covariance needs two points)
      cfg: 1.5                    # the sampler's settings (var_model/generation.py)
      top_k: 0
      top_p: 0.96
      seed: 0
      feature: builtin            # builtin (the study's classifier) | inception (FID / IS)

Every field is part of the protocol that is recorded next to each number (evaluation/protocol.py):
two numbers measured under different protocols are not comparable, and `varscale fit` refuses to
fit them together.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from var_model.errors import ConfigError

FEATURES = ("builtin", "inception")


@dataclass(frozen=True)
class FeatureNetworkConfig:
    """The built-in feature network (evaluation/features.py): a small CNN classifier of the
    data's classes, trained once per study on the real training images.

    width [32]: channels of the first convolution (doubled twice). feature_dim [64]: the
    penultimate layer, whose activations are the features. steps [1000], batch_size [64],
    lr [3e-3], seed [0]: its training (AdamW, cosine decay). augment [0.5]: the probability that
    a training image is blurred (evaluation/features.py: it scores reconstructions and samples,
    which are blurrier than the real images it learns from)."""

    width: int = 32
    feature_dim: int = 64
    # 1000: test accuracy 0.87 against 0.77 at 500 (measured, with the blur augmentation); the
    # tokenizer stage trains it beside the tokenizer, on its own CPU
    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    augment: float = 0.5

    def __post_init__(self) -> None:
        for name in ("width", "feature_dim", "steps", "batch_size"):
            _integer(f"evaluation.network.{name}", getattr(self, name), minimum=1)
        _integer("evaluation.network.seed", self.seed, minimum=0)
        if not (_is_number(self.lr) and self.lr > 0):
            raise ConfigError(f"evaluation.network.lr is {self.lr!r}; it must be a positive number")
        if not (_is_number(self.augment) and 0.0 <= self.augment <= 1.0):
            raise ConfigError(f"evaluation.network.augment is {self.augment!r}; allowed range [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EvaluationConfig:
    """Fields (defaults in brackets):

    samples_per_class [10]: K samples of every class (K >= 2).
    cfg [1.5], top_k [0 = off], top_p [0.96], seed [0]: the sampling settings.
    at_evaluation_points [False]: also evaluate samples at the trial's eval_every points (the
      end of a trial is always evaluated).
    batch_size [100]: images generated per forward.
    feature ["builtin"]: builtin (the study's classifier of its classes: sample_fd,
      sample_accuracy, sample_precision, sample_recall) or inception (Inception-v3 pool features
      through torch-fidelity: sample_fid, sample_inception_score, sample_precision, sample_recall).
    network [FeatureNetworkConfig()]: the builtin network's settings (they key its cache).
    inception_weights [None]: feature inception: the local torch-fidelity Inception-v3 weights
      file (pt_inception-2015-12-05); nothing is downloaded.
    reference [None]: feature inception: an .npz with mu and sigma (e.g. the ADM evaluator's
      VIRTUAL_imagenet256_labeled.npz); None = statistics of the study's test (validation) split,
      computed once in the study's tokenizer stage.
    neighbours [3]: k of the k-NN precision/recall (Kynkaanniemi et al. 2019 use 3).
    """

    samples_per_class: int = 10
    cfg: float = 1.5
    top_k: int = 0
    top_p: float = 0.96
    seed: int = 0
    at_evaluation_points: bool = False
    batch_size: int = 100
    feature: str = "builtin"
    network: FeatureNetworkConfig = dataclasses.field(default_factory=FeatureNetworkConfig)
    inception_weights: str | None = None
    reference: str | None = None
    neighbours: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.network, dict):
            # frozen: a YAML mapping becomes the dataclass it describes
            object.__setattr__(self, "network", _network_from_dict(self.network))
        _integer("evaluation.samples_per_class", self.samples_per_class, minimum=2, why=" (a covariance needs 2)")
        for name in ("batch_size", "neighbours"):
            _integer(f"evaluation.{name}", getattr(self, name), minimum=1)
        for name in ("top_k", "seed"):
            _integer(f"evaluation.{name}", getattr(self, name), minimum=0)
        if not (_is_number(self.cfg) and self.cfg >= 0 and math.isfinite(self.cfg)):
            raise ConfigError(f"evaluation.cfg is {self.cfg!r}; it must be a finite number >= 0")
        if not (_is_number(self.top_p) and 0.0 <= self.top_p <= 1.0):
            raise ConfigError(f"evaluation.top_p is {self.top_p!r}; allowed range [0, 1]")
        if not isinstance(self.at_evaluation_points, bool):
            raise ConfigError(f"evaluation.at_evaluation_points is {self.at_evaluation_points!r}; use true or false")
        if self.feature not in FEATURES:
            raise ConfigError(f"evaluation.feature is {self.feature!r}; allowed: {', '.join(FEATURES)}")
        if self.feature == "inception" and not self.inception_weights:
            raise ConfigError(
                "evaluation.feature is inception but evaluation.inception_weights is not set; name the local "
                "Inception-v3 weights file (torch-fidelity's pt_inception-2015-12-05-6726825d.pth): nothing is "
                "downloaded at run time"
            )
        if self.feature == "builtin" and (self.inception_weights or self.reference):
            raise ConfigError(
                "evaluation.inception_weights and evaluation.reference belong to feature inception; the builtin "
                "feature network makes its own reference from the test images: remove them or set feature: inception"
            )

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["network"] = self.network.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvaluationConfig:
        if not isinstance(values, dict):
            raise ConfigError(f"evaluation must be a mapping of EvaluationConfig fields, got {values!r}")
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown evaluation keys {unknown}; allowed: {sorted(known)}")
        return cls(**values)


def _network_from_dict(values: dict[str, Any]) -> FeatureNetworkConfig:
    known = {item.name for item in dataclasses.fields(FeatureNetworkConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown evaluation.network keys {unknown}; allowed: {sorted(known)}")
    return FeatureNetworkConfig(**values)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(name: str, value: Any, minimum: int, why: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} is {value!r}; it must be an integer >= {minimum}{why}")
