"""The tokenizer stage task: it builds the cache and reports the class count the trainer will use."""

from pathlib import Path

from orchestration.study.loading import load_study

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")


def test_tokenizer_stage_reports_the_cache_class_count(tmp_path):
    from orchestration.execution.tokenizer_task import run_tokenizer_stage

    spec = load_study(TINY, [f"storage={tmp_path}"])
    stage = run_tokenizer_stage(spec)
    assert stage["num_classes"] == spec.model.num_classes
    # the cache's content key, which the launcher holds every trial of the study to
    assert stage["cache_key"].startswith(Path(stage["cache_path"]).name.removeprefix("tokens-"))
    assert len(stage["tokenizer_hash"]) == 64
