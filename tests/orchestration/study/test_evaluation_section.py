"""The study's `evaluation:` section: bad input is refused when the study loads, naming the
field, and a good section reaches every trial's TrialConfig."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from orchestration.study.evaluation_section import check_evaluation_files
from orchestration.study.loading import parse_study
from orchestration.study.trial_config import build_trial_config
from orchestration.study.trials import expand
from var_model.errors import ConfigError
from var_model.evaluation import EvaluationConfig

TINY = Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml"


def _study(tmp_path, evaluation: dict):
    mapping = yaml.safe_load(TINY.read_text())
    mapping["evaluation"] = evaluation
    return parse_study(mapping, base_directory=str(tmp_path))


def test_every_trial_gets_the_protocol(tmp_path):
    spec = _study(tmp_path, {"samples_per_class": 4, "cfg": 2.0, "top_k": 50})
    config = build_trial_config(spec, expand(spec)[0])
    protocol = EvaluationConfig.from_dict(config.evaluation)
    assert (protocol.samples_per_class, protocol.cfg, protocol.top_k, protocol.feature) == (4, 2.0, 50, "builtin")


def test_one_sample_per_class_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"evaluation.samples_per_class: must be >= 2"):
        _study(tmp_path, {"samples_per_class": 1})


def test_a_missing_weights_file_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match=r"evaluation.inception_weights: .*missing.pth' is not a file"):
        _study(tmp_path, {"feature": "inception", "inception_weights": "missing.pth"})
    with pytest.raises(ConfigError, match="inception_weights is not set"):
        _study(tmp_path, {"feature": "inception"})


def test_a_reference_without_mu_and_sigma_is_refused(tmp_path):
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"weights")
    np.savez(tmp_path / "reference.npz", images=np.zeros((2, 3)))
    with pytest.raises(ConfigError, match=r"evaluation.reference: .* has no \['mu', 'sigma'\]"):
        _study(tmp_path, {"feature": "inception", "inception_weights": str(weights), "reference": "reference.npz"})


def test_evaluation_under_trial_is_refused(tmp_path):
    mapping = yaml.safe_load(TINY.read_text())
    mapping.setdefault("trial", {})["evaluation"] = {"samples_per_class": 4}
    with pytest.raises(ConfigError, match="trial.evaluation: set by the study"):
        parse_study(mapping, base_directory=str(tmp_path))


def test_the_builtin_network_is_for_the_synthetic_data_only(tmp_path):
    spec = _study(tmp_path, {"samples_per_class": 2})
    check_evaluation_files(spec.evaluation, "synthetic")
    with pytest.raises(ConfigError, match="data.kind is image_folder; use evaluation.feature: inception"):
        check_evaluation_files(spec.evaluation, "image_folder")
