"""The tokenizer stage task: it builds the cache and reports the class count the trainer will use."""

from pathlib import Path

from orchestration.study.loading import load_study

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")


def test_tokenizer_stage_reports_the_cache_class_count(tmp_path):
    from orchestration.execution.tokenizer_task import run_tokenizer_stage

    spec = load_study(TINY, [f"storage={tmp_path}"])
    assert run_tokenizer_stage(spec)["num_classes"] == spec.model.num_classes
