"""Trials reuse Ray's worker processes: a worker pays the imports (torch, MLflow, var_model: 5-11 s
on the demo, docs/STARTUP.md) once, not once per trial. Ray reuses a task's worker unless
something defeats it (max_calls, a runtime_env per task, GPU tasks declared with num_gpus in
`ray.remote`); this guards the launcher against such a change."""

import os
from pathlib import Path

from fake_trial import fake_run_trial, fake_tokenizer_stage

from orchestration.execution.launcher import launch
from orchestration.study.loading import load_study

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")
CPU_SLOTS = 4  # the session cluster (tests/orchestration/conftest.py): 2 nodes of 2 CPUs


def test_more_trials_than_cpu_slots_run_in_at_most_one_worker_per_slot(ray_cluster, tmp_path):
    # 12 trials of 1 CPU on the session cluster's 4 CPUs (2 nodes x 2): 4 workers at most
    spec = load_study(TINY, [f"storage={tmp_path}", "seeds=[0, 1, 2]", "resources.cpus=1"])
    with open(os.devnull, "w") as stream:
        result = launch(spec, stream=stream, tokenizer_function=fake_tokenizer_stage, trial_function=fake_run_trial)
    assert result.ok and len(result.results) == 12
    workers = {(outcome["node_id"], outcome["pid"]) for outcome in result.results.values()}
    assert len(workers) <= CPU_SLOTS, f"{len(result.results)} trials ran in {len(workers)} worker processes"
