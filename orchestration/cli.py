"""`varscale`: the command line of the workbench.

Tiny CPU walk-through (minutes on a laptop):

    varscale dry-run studies/smoke.yaml              # the trials, their params, FLOPs and cost
    varscale launch studies/smoke.yaml               # tokenizer stage, then every trial on Ray
    varscale status studies/smoke.yaml               # per-trial state and last metrics (MLflow)
    varscale fit studies/smoke.yaml                  # scaling-law fits, figures, MLflow parent run
    varscale ui studies/smoke.yaml                   # MLflow UI on http://127.0.0.1:5000
    varscale demo studies/smoke.yaml                 # launch + fit + how to look at the results

Every study command takes `--set key.sub=value` (repeatable) to override the file, e.g.
`--set model.depths=[2,4] --set storage=/tmp/smoke`. Other subcommands (train, tokenizer,
sample, edit, bench, fit) come from their own layers through `register(subparsers)`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
import sys

from analysis.mlflow_schema import redact_uri
from var_model.errors import VarScaleError

# Subcommands with a module of their own: each has `register(subparsers)` that adds its parsers
# and sets `handler`.
REGISTERED_COMMANDS = (
    "var_model.training.command",
    "var_model.edit_command",
    "var_model.bench",
    "orchestration.commands.fit",
)

# The user[:password]@ part of a URL (http://user:secret@host:5000 -> http://host:5000).
CREDENTIALS_IN_URL = re.compile(r"(?<=://)[^/\s@]+@")

# The handlers below import their layer when they run, not at the top of this module: the
# study commands must not load MLflow and Ray at every start (`varscale dry-run` needs neither),
# and `varscale status` must not load Ray (tests/test_import_cycles.py lists these places).


def _study_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="study file, e.g. studies/smoke.yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a study field (YAML value), e.g. --set model.depths=[2,4]; repeatable",
    )


def _load(args):
    from orchestration.study.loading import load_study

    return load_study(args.study, args.overrides)


def _dry_run(args) -> int:
    from orchestration.study.dry_run import dry_run_table

    print(dry_run_table(_load(args)))
    return 0


def _launch(args) -> int:
    from orchestration.execution.loopback import bind_local_ray_to_loopback

    bind_local_ray_to_loopback(args.address)  # before Ray is imported (by the launcher)
    from orchestration.execution.launcher import launch

    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise VarScaleError(f"--max-concurrent is {args.max_concurrent}; give at least 1 (or leave it out)")

    spec = _load(args)
    result = launch(spec, address=args.address, max_concurrent=args.max_concurrent, dashboard=args.dashboard)
    for key, error in result.errors.items():
        print(f"FAILED {key}: {without_credentials(error.splitlines()[0]) if error else ''}", file=sys.stderr)
    print(result.summary(spec.name))
    if result.interrupted:
        return 130
    return 0 if result.ok else 1


def _status(args) -> int:
    from orchestration.tracking.server_check import check_tracking_server
    from orchestration.tracking.status import status_table

    spec = _load(args)
    check_tracking_server(spec.tracking_uri)  # seconds, not MLflow's minutes of retries
    print(status_table(spec))
    return 0


def _ui(args) -> int:
    from orchestration.commands.ui import run_ui

    spec = _load(args)
    return run_ui(spec.tracking_uri, host=args.host, port=args.port, study=spec.name)


def _demo(args) -> int:
    spec = _load(args)
    code = _launch(args)
    if code != 0:
        return code
    parser = build_parser()
    # The fits live with the study's other results, not in whatever directory demo ran from.
    fit_arguments = parser.parse_args(
        ["fit", spec.name, "--tracking-uri", spec.tracking_uri, "--out", os.path.join(spec.storage, "fits")]
    )
    code = fit_arguments.handler(fit_arguments)
    overrides = "".join(f" --set {without_credentials(item)}" for item in args.overrides)
    varscale, jupyter = _command_path("varscale"), _command_path("jupyter")
    print(f"\nfits, figures and tables: {os.path.join(spec.storage, 'fits')}")
    print("next:")
    print(f"  {varscale} status {args.study}{overrides}      # per-trial state and metrics")
    from orchestration.commands.ui import runs_view_address

    runs_view = runs_view_address(spec.tracking_uri, spec.name)
    print(f"  {varscale} ui {args.study}{overrides}          # then open {runs_view}")
    print(
        f"  VARSCALE_STUDY={spec.name} MLFLOW_TRACKING_URI='{redact_uri(spec.tracking_uri)}' "
        f"{jupyter} lab notebooks/scaling_curves.ipynb   # the analysis notebook"
    )
    if without_credentials(spec.tracking_uri) != spec.tracking_uri:
        print("  (credentials left out: give them as MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)")
    return code


def without_credentials(text: str) -> str:
    """`text` with the user:password@ of every URL in it removed: what this command prints may
    be copied into a shell history, a log or an issue (analysis.mlflow_schema.redact_uri does
    the same for one URI)."""
    return CREDENTIALS_IN_URL.sub("", text)


def _command_path(name: str) -> str:
    """How the user can type `name`: bare when PATH finds this environment's copy (an activated
    venv), else the path to it (`make demo` runs .venv/bin/varscale without activating)."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    found = shutil.which(name)
    if found and os.path.realpath(found) == os.path.realpath(here):
        return name
    return os.path.relpath(here) if os.path.exists(here) else name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="varscale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dry_run = subparsers.add_parser("dry-run", help="print the trials of a study and their cost; trains nothing")
    _study_arguments(dry_run)
    dry_run.set_defaults(handler=_dry_run)

    for name, handler, help_text in (
        ("launch", _launch, "run a study's trials on Ray (local, or a cluster with --address)"),
        ("demo", _demo, "launch a study, fit its scaling laws, and print how to look at the results"),
    ):
        command = subparsers.add_parser(name, help=help_text)
        _study_arguments(command)
        command.add_argument(
            "--address",
            default=None,
            help="Ray cluster address (host:6379 or 'auto'); default: RAY_ADDRESS, else a local Ray",
        )
        command.add_argument(
            "--max-concurrent",
            type=int,
            default=None,
            help="at most N trials at once (default: as many as the resources allow)",
        )
        command.add_argument("--dashboard", action="store_true", help="start the Ray dashboard (on 127.0.0.1)")
        command.set_defaults(handler=handler)

    status = subparsers.add_parser("status", help="per-trial state and last metrics, from MLflow")
    _study_arguments(status)
    status.set_defaults(handler=_status)

    ui = subparsers.add_parser("ui", help="start the MLflow UI for a study's store")
    _study_arguments(ui)
    ui.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(handler=_ui)

    for module_name in REGISTERED_COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except VarScaleError as error:
        # Bad input or a failed start: the message says what and how to fix it; no traceback.
        print(f"varscale {args.command}: error: {without_credentials(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
