"""The launch path on a simulated two-node Ray cluster, with a fast contract-honouring trial
function (tests/orchestration/fake_trial.py): MLflow layout, relaunch, kill -9 of a worker,
divergence, Ctrl-C, the resource check, and trials spread over nodes."""

import _thread
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from fake_trial import SlowTrial, failing_for_depth_2, fake_run_trial, fake_tokenizer_stage
from mlflow.tracking import MlflowClient

from analysis.mlflow_schema import (
    KIND_TAG,
    PARENT_RUN_TAG,
    STATUS_TAG,
    TOKEN_CACHE_TAG,
    TRIAL_KEY_TAG,
    logged_metric_name,
)
from orchestration.execution.failures import FAILURE_FILE
from orchestration.execution.launcher import launch
from orchestration.execution.ray_runtime import (
    RayStartError,
    ResourceError,
    check_reachable,
    check_resources,
    default_concurrency,
)
from orchestration.execution.study_lock import StudyLock, StudyLockedError
from orchestration.study.loading import load_study
from orchestration.study.trials import expand
from orchestration.tracking.status import study_status
from orchestration.tracking.study_runs import StudyTracker, git_revision
from var_model.errors import ConfigError

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")


def runs_of(spec):
    client = MlflowClient(spec.tracking_uri)
    experiment = client.get_experiment_by_name(spec.name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [run for run in runs if run.data.tags.get(KIND_TAG) == "study"]
    children = [run for run in runs if run.data.tags.get(KIND_TAG) == "trial"]
    return client, parents, children


def quiet_launch(spec, **options):
    with open(os.devnull, "w") as stream:
        return launch(spec, stream=stream, tokenizer_function=fake_tokenizer_stage, **options)


def test_study_runs_once_per_trial_spreads_over_nodes_and_relaunch_reruns_nothing(ray_cluster, tmp_path):
    # one fake GPU per trial and one per node: trials must use both nodes
    spec = load_study(TINY, [f"storage={tmp_path}", "resources.custom={fake_gpu: 1}"])
    result = quiet_launch(spec, trial_function=fake_run_trial)
    assert result.ok and sorted(result.statuses.values()) == ["completed"] * 4
    assert len({outcome["node_id"] for outcome in result.results.values()}) == 2

    client, parents, children = runs_of(spec)
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert {name for name in (a.path for a in client.list_artifacts(parent.info.run_id))} >= {
        "study.resolved.yaml",
        "dry_run.txt",
        "tokenizer_stage.json",
    }
    for child in children:
        tags, params = child.data.tags, child.data.params
        trial = next(t for t in expand(spec) if t.key == tags[TRIAL_KEY_TAG])
        assert tags[PARENT_RUN_TAG] == parent.info.run_id and tags[STATUS_TAG] == "completed"
        assert child.info.status == "FINISHED"
        assert (int(params["depth"]), int(params["width"]), int(params["params_total"])) == (
            trial.depth,
            trial.width,
            trial.params_total,
        )
        assert float(params["budget_value"]) == trial.budget_value and float(params["lr"]) == trial.lr
        history = client.get_metric_history(child.info.run_id, logged_metric_name("train_loss"))
        assert sorted(metric.step for metric in history) == list(range(1, trial.steps + 1))
        images = client.get_metric_history(child.info.run_id, logged_metric_name("images"))
        assert sorted(metric.value for metric in images) == [8.0 * step for step in range(1, trial.steps + 1)]
        assert child.data.metrics[logged_metric_name("final_images")] == trial.images
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"samples.png", "trial_config.yaml"} <= artifacts

    again = quiet_launch(spec, trial_function=fake_run_trial)
    assert again.results == {} and sorted(again.skipped) == sorted(result.statuses)
    _, parents_after, children_after = runs_of(spec)
    assert len(parents_after) == 1 and len(children_after) == 4
    assert {child.data.tags[TOKEN_CACHE_TAG] for child in children_after} == {result.token_cache}

    # One more seed, but the tokenizer stage now gives another cache (a changed data set, a
    # corrupt tokenizer): the new trials would sit in the fits beside the old cache's.
    def other_cache(study):
        return {**fake_tokenizer_stage(study), "cache_path": str(Path(study.storage, "token_cache", "other"))}

    more = load_study(TINY, [f"storage={tmp_path}", "resources.custom={fake_gpu: 1}", "seeds=[0,1]"])
    with open(os.devnull, "w") as stream, pytest.raises(ConfigError, match="one study never mixes token caches"):
        launch(more, stream=stream, tokenizer_function=other_cache, trial_function=fake_run_trial)
    _, _, children_refused = runs_of(spec)
    assert len(children_refused) == 4  # refused before any run of the new seed was created


def _when_checkpointed(directories: list[Path], step: int, action) -> None:
    """Call action(directory) once any trial in `directories` has checkpointed `step`."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for directory in directories:
            try:
                if json.loads((directory / "checkpoint.json").read_text())["step"] >= step:
                    action(directory)
                    return
            except (FileNotFoundError, ValueError, KeyError):
                pass
        time.sleep(0.05)


def test_killed_worker_resumes_from_its_checkpoint_into_the_same_run(ray_cluster, tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}", "model.depths=[1]", "budgets.values=[80]"])
    (trial,) = expand(spec)
    killed = []

    def kill(directory: Path) -> None:
        pid = int((directory / "pid").read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=_when_checkpointed, args=([Path(spec.storage, "trials", trial.key)], 3, kill))
    killer.start()
    result = quiet_launch(spec, trial_function=SlowTrial(0.3))
    killer.join()
    assert killed, "the trial finished before it could be killed"
    assert result.ok and result.statuses == {trial.key: "completed"}
    assert result.results[trial.key]["pid"] != killed[0]  # a new worker finished it

    client, _, children = runs_of(spec)
    (child,) = children
    assert child.data.tags["varscale.attempts"] == "2"
    assert int(child.data.tags["varscale.resumed_step"]) >= 3  # not from scratch
    steps = sorted(
        metric.step for metric in client.get_metric_history(child.info.run_id, logged_metric_name("train_loss"))
    )
    assert sorted(set(steps)) == list(range(1, trial.steps + 1))


def test_divergence_is_recorded_and_the_study_goes_on(ray_cluster, tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}", "budgets.values=[16]", "model.overrides={drop_path_rate: 0.5}"])
    result = quiet_launch(spec, trial_function=fake_run_trial)
    assert sorted(result.statuses.values()) == ["diverged", "diverged"] and result.ok
    _, _, children = runs_of(spec)
    assert {child.data.tags[STATUS_TAG] for child in children} == {"diverged"}
    assert {child.data.tags["varscale.attempts"] for child in children} == {"1"}  # never retried
    assert quiet_launch(spec, trial_function=fake_run_trial).results == {}  # a result: not rerun


def test_a_python_error_fails_its_trial_once_and_the_study_goes_on(ray_cluster, tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}", "budgets.values=[16]"])
    result = quiet_launch(spec, trial_function=failing_for_depth_2)
    assert result.statuses == {"d1-b16-s0": "completed", "d2-b16-s0": "failed"} and not result.ok
    # the cause, not Ray's header line (RayTaskError(ValueError): ray::trial ...), and where the rest is
    assert result.errors["d2-b16-s0"].startswith("ValueError: a bug that fails the same way every time (traceback: ")
    assert "ValueError" in Path(spec.storage, "trials", "d2-b16-s0", FAILURE_FILE).read_text()
    _, _, children = runs_of(spec)
    failed = next(child for child in children if child.data.tags[TRIAL_KEY_TAG] == "d2-b16-s0")
    assert failed.info.status == "FAILED" and failed.data.tags["varscale.attempts"] == "1"
    assert "ValueError" in failed.data.tags["varscale.failure"]


def test_ctrl_c_then_relaunch_continues_without_duplicates(ray_cluster, tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}", "budgets.values=[48]"])
    directories = [Path(spec.storage, "trials", trial.key) for trial in expand(spec)]
    # Ctrl-C arrives as KeyboardInterrupt in the main thread, which is what interrupt_main does.
    seen_while_running = []

    def look_then_interrupt(_directory):
        seen_while_running.extend(row["state"] for row in study_status(spec))  # status works mid-run
        _thread.interrupt_main()

    watcher = threading.Thread(target=_when_checkpointed, args=(directories, 2, look_then_interrupt))
    watcher.start()
    first = quiet_launch(spec, trial_function=SlowTrial(0.5), max_concurrent=1)  # one runs, one waits
    watcher.join()
    assert first.interrupted
    assert "running" in seen_while_running
    assert sorted(first.statuses.values()) == ["interrupted", "not started"]
    assert "interrupted: 1 interrupted, 1 not started (0 finished earlier)" in first.summary(spec.name)
    _, parents, children = runs_of(spec)
    by_state = {child.data.tags[STATUS_TAG]: child for child in children}
    assert sorted(by_state) == ["failed", "pending"]  # resumable, and the waiting one still pending
    assert {child.info.status for child in children} == {"KILLED"}  # none left RUNNING

    second = quiet_launch(spec, trial_function=fake_run_trial)
    assert second.ok and set(second.statuses.values()) == {"completed"}
    _, parents, children = runs_of(spec)
    assert len(parents) == 1 and len(children) == 2
    assert any(int(child.data.tags.get("varscale.resumed_step", "0")) > 0 for child in children)


def test_unsatisfiable_resources_fail_fast(ray_cluster, tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}", "resources.gpus=1"])
    with pytest.raises(ResourceError, match=r"d1-b16-s0 needs 1 GPUs; the whole cluster has 0"):
        quiet_launch(spec, trial_function=fake_run_trial)


def test_resource_check_knows_per_node_limits(tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}", "resources.custom={fake_gpu: 2}"])
    nodes = [{"CPU": 2.0, "fake_gpu": 1.0}, {"CPU": 2.0, "fake_gpu": 1.0}]  # 2 in total, 1 per node
    with pytest.raises(ResourceError, match="the largest node offers"):
        check_resources(expand(spec), nodes)
    check_resources(expand(spec), [{"CPU": 1.0, "fake_gpu": 2.0}])


def test_runs_left_running_by_a_killed_driver_are_resumed_in_place(ray_cluster, tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}", "model.depths=[1]", "budgets.values=[16]"])
    (trial,) = expand(spec)
    # What a driver killed with -9 leaves: a child run RUNNING, tagged running, half trained.
    tracker = StudyTracker(spec)
    tracker.start_parent()
    run_id = tracker.create_trial_run(trial, git_revision())
    tracker.client.set_tag(run_id, STATUS_TAG, "running")
    checkpoint = Path(spec.storage, "trials", trial.key, "checkpoint.json")
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text(json.dumps({"step": 1}))

    result = quiet_launch(spec, trial_function=fake_run_trial)
    assert result.ok and result.statuses == {trial.key: "completed"}
    client, parents, children = runs_of(spec)
    assert len(parents) == 1 and [child.info.run_id for child in children] == [run_id]
    assert children[0].data.tags["varscale.resumed_step"] == "1"


def test_a_second_launch_of_the_same_study_is_refused(tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}"])
    with StudyLock(spec.storage, spec.name):
        with pytest.raises(StudyLockedError, match=r"study 'tiny_test' is already being launched \(pid \d+"):
            quiet_launch(spec, trial_function=fake_run_trial)
    with StudyLock(spec.storage, spec.name):  # released on exit
        pass


def test_default_concurrency_is_what_the_cluster_holds(tmp_path):
    spec = load_study(TINY, [f"storage={tmp_path}", "resources.custom={fake_gpu: 1}"])
    assert default_concurrency(expand(spec), {"CPU": 4.0, "fake_gpu": 2.0}) == 2  # fake GPUs bind
    assert default_concurrency(expand(spec), {"CPU": 1.0, "fake_gpu": 2.0}) == 2  # 0.5 CPU each
    assert default_concurrency(expand(spec), {"CPU": 0.25, "fake_gpu": 2.0}) == 1


def test_unreachable_head_fails_in_seconds_with_a_hint():
    # start_ray runs this check before ray.init (which would retry for minutes)
    with pytest.raises(RayStartError, match=r"cannot reach the Ray head at 127\.0\.0\.1:1 .*ray start --head"):
        check_reachable("127.0.0.1:1")
    with pytest.raises(RayStartError, match=r"expected HOST:PORT of the head node"):
        check_reachable("head-node")


def test_launch_refuses_a_model_num_classes_the_token_cache_does_not_have(ray_cluster, tmp_path):
    # The trainer builds the VAR with the cache's class count; the dry-run and the params logged
    # to MLflow (params_total, used as N by every fit) use model.num_classes. If they differ,
    # every fit would use a wrong N, so the launch must stop before any trial run is created.
    spec = load_study(TINY, [f"storage={tmp_path}"])

    def stage_with_other_classes(study):
        return {**fake_tokenizer_stage(study), "num_classes": spec.model.num_classes + 5}

    with open(os.devnull, "w") as stream, pytest.raises(ConfigError, match="model.num_classes"):
        launch(spec, stream=stream, tokenizer_function=stage_with_other_classes, trial_function=fake_run_trial)
    client = MlflowClient(spec.tracking_uri)
    experiment = client.get_experiment_by_name(spec.name)
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'trial'")
    assert runs == []
