"""Under budgets.strategy branches a study holds trunks and branches: the loader reads each run's
role, and a trunk is never a point of a fit (its final metrics nor its curve)."""

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from analysis import mlflow_schema as schema
from analysis.loader import load_study


def write_run(client, experiment_id, parent_id, key, tags, loss):
    run = client.create_run(
        experiment_id,
        run_name=key,
        tags={
            schema.KIND_TAG: schema.TRIAL_KIND,
            schema.TRIAL_KEY_TAG: key,
            schema.STATUS_TAG: schema.COMPLETED,
            schema.PARENT_RUN_TAG: parent_id,
            **tags,
        },
    )
    run_id = run.info.run_id
    client.log_batch(
        run_id,
        params=[Param("depth", "2"), Param("budget_value", "64.0"), Param("params_total", "100")],
        metrics=[
            Metric("test_loss_avg", loss, 0, 4),
            Metric("images", 32.0, 0, 4),
            Metric(f"{schema.FINAL_PREFIX}test_loss_avg", loss, 0, 4),
        ],
    )
    client.set_terminated(run_id)


def test_a_trunk_is_read_with_its_role_and_left_out_of_the_fit_points(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("branches", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(experiment_id, tags={schema.KIND_TAG: schema.STUDY_KIND}).info.run_id
    trunk_tags = {schema.ROLE_TAG: schema.TRUNK_ROLE, schema.TRUNK_KEY_TAG: "d2-trunk-s0"}
    write_run(client, experiment_id, parent, "d2-trunk-s0", trunk_tags, 3.0)
    branch_tags = {schema.ROLE_TAG: schema.BRANCH_ROLE, schema.TRUNK_KEY_TAG: "d2-trunk-s0", schema.FORK_STEP_TAG: "4"}
    write_run(client, experiment_id, parent, "d2-b64-s0", branch_tags, 2.5)
    write_run(client, experiment_id, parent, "d3-b64-s0", {}, 2.4)  # a run from before roles: independent

    study = load_study("branches", uri)
    roles = dict(zip(study.trials["trial_key"], study.trials["role"], strict=True))
    assert roles == {"d2-trunk-s0": "trunk", "d2-b64-s0": "branch", "d3-b64-s0": "independent"}
    branch = study.trials.set_index("trial_key").loc["d2-b64-s0"]
    assert (branch["trunk_key"], branch["fork_step"]) == ("d2-trunk-s0", 4)
    assert sorted(study.fit_trials()["trial_key"]) == ["d2-b64-s0", "d3-b64-s0"]
    assert set(study.fit_curves()["trial_key"]) == {"d2-b64-s0", "d3-b64-s0"}
    assert "d2-trunk-s0" in set(study.curves["trial_key"])  # kept for plots, never a point
