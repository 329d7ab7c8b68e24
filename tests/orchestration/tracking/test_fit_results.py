"""`varscale fit`'s results on the parent run: a study with more laws than one `log_batch`
takes (MLflow: 100 tags), the law table in the run's description, and storage that refuses
the writes (a one-line error after the printed table, no traceback)."""

import contextlib
import os
import subprocess
import time

import pytest
from mlflow.entities import Metric, Param, RunTag

from analysis import mlflow_schema as schema
from analysis.loader import load_study
from analysis.report import law_table_text
from analysis.study_fits import fit_study_laws
from orchestration.cli import main
from orchestration.tracking.batches import log_batch_in_chunks
from orchestration.tracking.clients import tracking_client
from orchestration.tracking.fit_results import log_fit_results
from orchestration.tracking.run_notes import LAWS_HEADING, STUDY_HEADING, replace_section

DEPTHS = (4, 6, 8)


def write_study(tmp_path, name: str, budgets: list[float]) -> str:
    """A study of final metrics only, with sectioned names: loss = 3 N^-0.1 (images / 1e3)^-0.05."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = tracking_client(uri)
    experiment = client.create_experiment(name, artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(experiment, run_name=name, tags={schema.KIND_TAG: schema.STUDY_KIND})
    client.set_tag(parent.info.run_id, schema.NOTE_TAG, f"{STUDY_HEADING} {name}\n\nthe summary")
    now = int(time.time() * 1000)
    for depth in DEPTHS:
        for budget in budgets:
            key = f"d{depth}-b{budget:g}-s0"
            params_total = 1000 * depth**2
            tags = {schema.KIND_TAG: schema.TRIAL_KIND, schema.TRIAL_KEY_TAG: key, schema.STATUS_TAG: "completed"}
            run = client.create_run(experiment, run_name=key, tags={**tags, schema.PARENT_RUN_TAG: parent.info.run_id})
            loss = 3.0 * params_total**-0.1 * (budget / 1e3) ** -0.05
            finals = {"test_loss_last": loss, "test_loss_avg": 0.9 * loss, "test_error_last": 0.9}
            finals |= {"test_error_avg": 0.8}
            finals |= {"images": budget, "tokens": 21 * budget, "flops": 6.0 * params_total * 21 * budget}
            metrics = [Metric(schema.logged_metric_name(f"final_{m}"), v, now, 1) for m, v in finals.items()]
            params = {"depth": depth, "params_total": params_total, "budget_kind": "images", "budget_value": budget}
            client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
    return uri


def test_batches_over_mlflow_limits_are_split_and_all_land(tmp_path):
    client = tracking_client(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("chunks", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    tags = [RunTag(f"tag.{index}", "x") for index in range(250)]
    metrics = [Metric(f"metric.{index}", float(index), 0, 0) for index in range(1500)]
    assert log_batch_in_chunks(client, run_id, metrics=metrics, tags=tags) == 3
    data = client.get_run(run_id).data
    assert len(data.tags) >= 250 and len(data.metrics) == 1500


@pytest.mark.slow  # ~100 s on a loaded 2-core box: 165 runs written, then 110 fits
def test_a_fit_with_more_law_tags_than_one_batch_takes_is_logged_whole(tmp_path):
    budgets = [1e3 * 1.2**index for index in range(55)]  # 2 metrics with N-laws x 55 budgets: 110 law tags
    uri = write_study(tmp_path, "many-budgets", budgets)
    study = load_study("many-budgets", uri, load_curves=False)
    assert study.trials["test_loss_last"].notna().all()  # sectioned names load under today's columns
    fits = fit_study_laws(study, n_bootstrap=0)
    run_id = log_fit_results(study, fits, uri, [], law_table_text(fits))
    tags = tracking_client(uri).get_run(run_id).data.tags
    law_tags = [key for key in tags if key.startswith(schema.FIT_PREFIX) and key.endswith(".law")]
    assert len(law_tags) > 100
    note = tags[schema.NOTE_TAG]
    assert note.startswith(f"{STUDY_HEADING} many-budgets\n\nthe summary") and LAWS_HEADING in note  # summary kept


def test_a_refit_replaces_the_law_section_and_keeps_the_rest():
    note = replace_section("## Study s\n\nsummary\n", LAWS_HEADING, "## Scaling laws\n\nold")
    note = replace_section(note, LAWS_HEADING, "## Scaling laws\n\nnew")
    note = replace_section(note, STUDY_HEADING, "## Study s\n\nsummary 2")
    assert note == "## Study s\n\nsummary 2\n\n## Scaling laws\n\nnew\n"


@contextlib.contextmanager
def read_only(folder):
    """`folder` made read-only: by chmod, or, for root (whom chmod does not stop), by a read-only
    bind mount of it onto itself (skipped where mounting is not allowed)."""
    paths = [folder, *folder.rglob("*")]
    if os.geteuid() != 0:
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            for path in paths:
                path.chmod(0o755 if path.is_dir() else 0o644)
        return
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"root, and no read-only bind mount here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_read_only_storage_prints_the_table_then_one_line(tmp_path, capsys):
    storage = tmp_path / "storage"
    storage.mkdir()
    uri = write_study(storage, "read-only", [1e3])
    capsys.readouterr()  # MLflow's own lines from creating the store
    with read_only(storage):
        code = main(["fit", "read-only", "--tracking-uri", uri, "--out", str(tmp_path / "fits"), "--bootstrap", "0"])
    printed = capsys.readouterr()
    assert code == 2 and "test_loss_last" in printed.out  # the table stays printed
    assert printed.err.count("\n") == 1 and printed.err.startswith("varscale fit: error: the fits are in ")
    assert "Traceback" not in printed.err
