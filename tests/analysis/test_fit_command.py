"""`varscale fit`: table, figures, results files, and MLflow logging to the parent run."""

import argparse
import json
from pathlib import Path

import pytest

from orchestration.commands.fit import fit_study, parse_irreducible, read_name_and_tracking_uri, register, resolve_study


def test_fit_study_writes_files_and_logs_to_the_parent_run(synthetic_study, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "fits"
    results = fit_study(synthetic_study["study"], synthetic_study["tracking_uri"], str(out), n_bootstrap=20)
    printed = capsys.readouterr().out
    assert "test_loss_last" in printed and "completed of 9 trials" in printed
    for stem in (
        "scaling_vs_size",
        "frontier_test_loss_last",
        "per_scale_loss",
        "training_curves",
        "predicted_vs_actual",
    ):
        assert (out / f"{stem}.png").stat().st_size > 0
    assert not list(out.glob("*.svg")), "SVG copies are written only with --svg"
    saved = json.loads((out / "results.json").read_text())
    law = next(law for law in saved["laws"] if law["metric"] == "test_loss_last" and law["against"] == "N")
    assert law["alpha"] == pytest.approx(-0.23, abs=0.01)
    assert law["alpha_low"] < law["alpha"] < law["alpha_high"]
    assert saved["status_counts"] == {"completed": 7, "failed": 1, "diverged": 1}
    assert (out / "laws.csv").read_text().startswith("metric,against,budget,law")

    client = MlflowClient(synthetic_study["tracking_uri"])
    assert results["parent_run_id"] == synthetic_study["parent_run_id"]
    parent = client.get_run(results["parent_run_id"])
    assert parent.data.metrics["fit.test_loss_last.N.alpha"] == pytest.approx(law["alpha"])
    assert parent.data.tags["fit.test_loss_last.N.law"].startswith("test_loss_last = (")
    artifacts = {item.path for item in client.list_artifacts(results["parent_run_id"], "fits")}
    assert {"fits/results.json", "fits/scaling_vs_size.png", "fits/laws.csv"} <= artifacts


def test_svg_copies_of_the_figures_on_request(synthetic_study, tmp_path):
    out = tmp_path / "fits"
    results = fit_study(
        synthetic_study["study"],
        synthetic_study["tracking_uri"],
        str(out),
        n_bootstrap=0,
        log_to_mlflow=False,
        svg=True,
    )
    pngs = {path.stem for path in out.glob("*.png")}
    assert pngs and {path.stem for path in out.glob("*.svg")} == pngs
    assert (out / "training_curves.svg").read_text().lstrip().startswith("<?xml")
    assert str(out / "training_curves.svg") in results["files"]


def test_register_adds_the_fit_subcommand():
    parser = argparse.ArgumentParser(prog="varscale")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["fit", "my-study", "--tracking-uri", "sqlite:///x.db", "--bootstrap", "50"])
    assert (args.study, args.tracking_uri, args.bootstrap, args.out) == ("my-study", "sqlite:///x.db", 50, None)
    assert args.svg is False and parser.parse_args(["fit", "my-study", "--svg"]).svg is True
    assert callable(args.handler)
    args = parser.parse_args(["fit", "s", "--irreducible", "test_loss_last=4.5", "--irreducible", "test_loss_avg=5"])
    assert parse_irreducible(args.irreducible) == {"test_loss_last": 4.5, "test_loss_avg": 5.0}
    with pytest.raises(ValueError, match="METRIC one of"):
        parse_irreducible(["train_loss=1"])
    with pytest.raises(ValueError, match="not a number"):
        parse_irreducible(["test_loss_last=high"])


def test_study_argument_may_be_a_name_or_a_yaml_file(tmp_path):
    assert resolve_study("plain-name", "sqlite:///a.db") == ("plain-name", "sqlite:///a.db")
    path = tmp_path / "study.yaml"
    path.write_text("name: tiny\ntracking_uri: sqlite:////tmp/tiny.db\nmodel: {depths: [2]}\n")
    assert read_name_and_tracking_uri(path) == ("tiny", "sqlite:////tmp/tiny.db")
    assert read_name_and_tracking_uri(path, "sqlite:///override.db") == ("tiny", "sqlite:///override.db")
    (tmp_path / "bad.yaml").write_text("depths: [2]\n")
    with pytest.raises(ValueError, match="no top-level 'name:'"):
        read_name_and_tracking_uri(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError):
        resolve_study(str(tmp_path / "missing.yaml"), None)


def test_bad_bootstrap_count_is_refused(synthetic_study, tmp_path):
    with pytest.raises(ValueError, match="--bootstrap must be 0"):
        fit_study(synthetic_study["study"], synthetic_study["tracking_uri"], str(tmp_path), n_bootstrap=1)


def test_a_study_file_is_read_with_the_study_spec_parser():
    study_file = Path(__file__).resolve().parents[1] / "orchestration" / "fixtures" / "tiny_study.yaml"
    if not study_file.exists():
        pytest.skip(f"no study file fixture at {study_file}")
    name, tracking_uri = resolve_study(str(study_file), None)
    assert name == "tiny_test" and tracking_uri.startswith("sqlite:///") and tracking_uri.endswith("mlflow.db")
    assert resolve_study(str(study_file), "sqlite:///override.db") == ("tiny_test", "sqlite:///override.db")
