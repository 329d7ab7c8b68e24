"""With an evaluation: section the tokenizer stage task also builds the study's feature network
beside the token cache and reports the floors, which the launcher logs on the parent run."""

import threading
from pathlib import Path

import pytest

from orchestration.execution import tokenizer_task
from orchestration.execution.tokenizer_task import run_tokenizer_stage
from orchestration.study.loading import load_study
from orchestration.study.trial_config import build_trial_config
from orchestration.study.trials import expand
from var_model.evaluation import EvaluationConfig, SampleEvaluator
from var_model.tokenizer import TokenCache

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")
EVALUATION = "evaluation={samples_per_class: 2, network: {width: 8, feature_dim: 8, steps: 5, batch_size: 16}}"


@pytest.mark.slow  # a whole tokenizer stage: ~25 s on a loaded 2-core box
def test_the_stage_builds_the_feature_network_and_reports_the_floors(tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}", EVALUATION])
    stage = run_tokenizer_stage(spec)
    report = stage["report"]
    assert 0.0 <= report["feature_test_accuracy"] <= 1.0
    assert {"floor_real_sample_fd", "floor_reconstruction_sample_fd", "floor_real_sample_accuracy"} <= set(report)
    # every trial finds the network the stage built, through its token cache
    config = build_trial_config(spec, expand(spec)[0], stage["cache_path"])
    cache = TokenCache.open(config.token_cache, verify=False)
    evaluator = SampleEvaluator.for_trial(EvaluationConfig.from_dict(config.evaluation), cache, "cpu")
    assert evaluator.protocol()["sample_protocol_samples"] == 2 * spec.model.num_classes


@pytest.mark.slow  # two tokenizer stages
def test_on_two_cpus_the_feature_network_trains_beside_the_tokenizer_and_is_the_same(tmp_path, monkeypatch):
    spec_alone = load_study(TINY, [f"storage={tmp_path / 'alone'}", EVALUATION])
    spec_beside = load_study(TINY, [f"storage={tmp_path / 'beside'}", EVALUATION])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    alone = run_tokenizer_stage(spec_alone)
    trained_in = []
    original = tokenizer_task.prepare_study_reference
    monkeypatch.setattr(
        tokenizer_task,
        "prepare_study_reference",
        lambda *arguments: (trained_in.append(threading.current_thread().name), original(*arguments))[1],
    )
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    beside = run_tokenizer_stage(spec_beside)
    assert trained_in and trained_in[0].startswith("feature network")  # in its own thread
    # trained on one thread either way, from its own generator: the same weights and the same floors
    assert beside["report"]["feature_test_accuracy"] == alone["report"]["feature_test_accuracy"]
    assert beside["report"]["floor_real_sample_fd"] == pytest.approx(alone["report"]["floor_real_sample_fd"])
