"""The `varscale` command line: subcommands and flags exist, bad input exits 2 with a message
(no traceback), and the MLflow UI is started lean and bound to this machine only."""

import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.cli import build_parser, main
from orchestration.commands.ui import ui_command, ui_environment

TINY = str(Path(__file__).parent / "fixtures" / "tiny_study.yaml")


def test_every_subcommand_is_registered():
    parser = build_parser()
    subcommands = next(action for action in parser._actions if action.dest == "command").choices
    assert {"dry-run", "launch", "status", "ui", "demo", "fit", "bench", "train", "tokenizer", "sample"} <= set(
        subcommands
    )
    arguments = parser.parse_args(
        [
            "launch",
            TINY,
            "--address",
            "10.0.0.5:6379",
            "--max-concurrent",
            "3",
            "--set",
            "seeds=[0,1]",
            "--set",
            "model.depths=[2]",
        ]
    )
    assert (arguments.address, arguments.max_concurrent) == ("10.0.0.5:6379", 3)
    assert arguments.overrides == ["seeds=[0,1]", "model.depths=[2]"]


def test_status_before_launch_says_what_to_do(tmp_path, capsys):
    assert main(["status", TINY, "--set", f"storage={tmp_path}"]) == 2
    assert "has no MLflow store yet" in capsys.readouterr().err


def test_max_concurrent_must_be_positive(tmp_path, capsys):
    assert main(["launch", TINY, "--set", f"storage={tmp_path}", "--max-concurrent", "0"]) == 2
    assert "--max-concurrent is 0; give at least 1" in capsys.readouterr().err


def test_ui_binds_localhost_with_one_worker_and_no_job_runner():
    command = ui_command("sqlite:////tmp/study/mlflow.db")
    assert command[1:4] == ["ui", "--backend-store-uri", "sqlite:////tmp/study/mlflow.db"]
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--workers") + 1] == "1"
    assert ui_environment()["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


@pytest.mark.parametrize("uri", ["http://bob:hunter2@mlflow.internal:5000"])
def test_credentials_never_reach_the_saved_spec(tmp_path, uri):
    from orchestration.study.loading import load_study, spec_to_yaml

    spec = load_study(TINY, [f"storage={tmp_path}", f"tracking_uri={uri}"])
    saved = spec_to_yaml(spec)
    assert "hunter2" not in saved and "http://mlflow.internal:5000" in saved


def test_the_cli_starts_without_mlflow_ray_or_pandas():
    # The reason the subcommand handlers import their layer lazily (tests/test_import_cycles.py).
    code = (
        "import sys, orchestration.cli as cli; cli.build_parser(); "
        "print(sorted({'mlflow', 'ray', 'pandas', 'matplotlib'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_status_of_an_unreachable_server_is_one_line_without_credentials(tmp_path, capsys):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://bob:hunter2@127.0.0.1:{port}"
    assert main(["status", TINY, "--set", f"storage={tmp_path}", "--set", f"tracking_uri={uri}"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"tracking server at http://127.0.0.1:{port} " in error and "hunter2" not in error
