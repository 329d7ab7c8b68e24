"""The `evaluation:` section of a study file: the sample-quality protocol of every trial.

    evaluation:
      samples_per_class: 10        # K per class, >= 2
      cfg: 1.5
      top_k: 0
      top_p: 0.96
      seed: 0
      at_evaluation_points: false  # also at the trial's eval_every points
      feature: builtin             # builtin | inception
      inception_weights: weights/pt_inception-2015-12-05-6726825d.pth   # feature inception
      reference: refs/VIRTUAL_imagenet256_labeled.npz  # feature inception; absent: the validation split's

Each field is var_model.evaluation.EvaluationConfig's (its defaults are read from there). Files
are checked when the study loads: a missing weights file or a reference .npz without mu and
sigma is an error before anything runs; `check_evaluation_files` (the tokenizer stage, before
any trial) also loads the weights into the Inception network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from orchestration.study.fields import (
    NonNegativeInteger,
    NonNegativeNumber,
    PositiveInteger,
    Text,
    choice,
    field_error,
    mapping_of,
)
from orchestration.study.section import Section, config_defaults, from_base_directory
from var_model.errors import ConfigError
from var_model.evaluation.config import FEATURES, EvaluationConfig
from var_model.evaluation.inception import InceptionExtractor

EVALUATION_DEFAULTS = config_defaults(EvaluationConfig)


class EvaluationSpec(Section):
    samples_per_class: PositiveInteger = EVALUATION_DEFAULTS["samples_per_class"]
    cfg: NonNegativeNumber = EVALUATION_DEFAULTS["cfg"]
    top_k: NonNegativeInteger = EVALUATION_DEFAULTS["top_k"]
    top_p: NonNegativeNumber = EVALUATION_DEFAULTS["top_p"]
    seed: NonNegativeInteger = EVALUATION_DEFAULTS["seed"]
    at_evaluation_points: bool = EVALUATION_DEFAULTS["at_evaluation_points"]
    batch_size: PositiveInteger = EVALUATION_DEFAULTS["batch_size"]
    feature: choice(FEATURES) = EVALUATION_DEFAULTS["feature"]
    network: mapping_of("of feature-network fields") = Field(default_factory=dict)  # FeatureNetworkConfig
    inception_weights: Text | None = None
    reference: Text | None = None
    neighbours: PositiveInteger = EVALUATION_DEFAULTS["neighbours"]

    @field_validator("samples_per_class")
    @classmethod
    def _two_or_more(cls, value: int) -> int:
        if value < 2:
            raise field_error(f"must be >= 2 (a covariance needs two samples per class), got {value}")
        return value

    @field_validator("inception_weights", "reference")
    @classmethod
    def _absolute(cls, path: str | None, info: ValidationInfo) -> str | None:
        return None if path is None else from_base_directory(path, info)

    @model_validator(mode="after")
    def _consistent(self) -> EvaluationSpec:
        try:
            self.evaluation_config()
        except ConfigError as error:
            raise field_error(str(error), path="") from None
        if self.inception_weights is not None and not _is_file(self.inception_weights):
            raise field_error(
                f"{self.inception_weights!r} is not a file; name the local Inception-v3 weights "
                "(nothing is downloaded at run time)",
                path="evaluation.inception_weights",
            )
        if self.reference is not None:
            _check_reference(self.reference)
        return self

    def evaluation_config(self) -> EvaluationConfig:
        return EvaluationConfig.from_dict(self.trial_values())

    def trial_values(self) -> dict[str, Any]:
        """The TrialConfig.evaluation mapping of every trial."""
        values = self.model_dump()
        return {**values, "network": dict(values["network"])}


def _is_file(path: str) -> bool:
    return Path(path).is_file()


def _check_reference(path: str) -> None:
    if not _is_file(path):
        raise field_error(f"{path!r} is not a file", path="evaluation.reference")
    try:
        with np.load(path) as reference:
            missing = [name for name in ("mu", "sigma") if name not in reference.files]
            names = reference.files
    except (OSError, ValueError) as error:
        raise field_error(f"{path!r} is not a readable .npz ({error})", path="evaluation.reference") from None
    if missing:
        raise field_error(
            f"{path!r} has no {missing} (it holds {names}); reference statistics need mu and sigma",
            path="evaluation.reference",
        )


def check_evaluation_files(spec: EvaluationSpec | None, data_kind: str) -> None:
    """The checks the tokenizer stage makes before it trains: the built-in feature network is
    the classifier of the synthetic data only, and the Inception weights must load into
    torch-fidelity's network (a wrong file is a ConfigError naming evaluation.inception_weights)."""
    if spec is None:
        return
    if spec.feature == "builtin" and data_kind != "synthetic":
        raise ConfigError(
            f"evaluation.feature builtin is the classifier of the embedded synthetic data, but data.kind is "
            f"{data_kind}; use evaluation.feature: inception with evaluation.inception_weights"
        )
    if spec.feature == "inception":
        InceptionExtractor(spec.inception_weights, "cpu")
