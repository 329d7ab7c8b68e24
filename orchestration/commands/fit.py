"""`varscale fit STUDY`: fit a study's scaling laws, print them, save figures and results, and log
them to the study's MLflow parent run.

    varscale fit studies/smoke.yaml                  # a study file: its name and tracking_uri are used
    varscale fit my-study --tracking-uri sqlite:////abs/path/mlflow.db --out fits/my-study --bootstrap 500
    varscale fit studies/smoke.yaml --svg            # also vector (SVG) copies of the figures, e.g. for a paper

The fitting itself is `analysis.fit_study_laws` (pure) and the report (figures, law table,
results) is `analysis.report`, which the notebook uses too; this module only does I/O: load,
write PNG figures (and SVG copies with --svg), results.json, laws.csv, trials.csv, then log them to the parent run
(`orchestration.tracking.fit_results`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from analysis.errors import AnalysisError
from orchestration.study.loading import load_study
from var_model.errors import VarScaleError

# PNG always; SVG copies only on request (--svg): nothing here reads them (the run's description
# shows the PNGs) and writing them was 5 s of the demo's fit.
FIGURE_FORMATS = ("png",)
VECTOR_FORMAT = "svg"


class FitLoggingError(VarScaleError):
    """The fit's results could not be logged to MLflow (they are saved as files)."""


def resolve_study(study: str, tracking_uri: str | None) -> tuple[str, str | None]:
    """STUDY may be a study name or a path to a studies/*.yaml file (then its name and tracking_uri,
    unless --tracking-uri overrides it)."""
    path = Path(study)
    if not (path.suffix in (".yaml", ".yml") or path.is_file()):
        return study, tracking_uri
    if not path.is_file():
        raise FileNotFoundError(f"study file {study!r} does not exist")
    # The study spec resolves the default tracking URI (the study's storage) exactly as
    # `varscale launch` does, so fit reads the store the launch wrote.
    spec = load_study(str(path))
    return spec.name, tracking_uri or spec.tracking_uri


def read_name_and_tracking_uri(path: Path, tracking_uri: str | None = None) -> tuple[str, str | None]:
    """Just the two top-level keys of a study file, without validating the rest."""
    mapping = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(mapping, dict) or "name" not in mapping:
        raise ValueError(f"study file {str(path)!r} has no top-level 'name:' key")
    return str(mapping["name"]), tracking_uri or mapping.get("tracking_uri")


def _save_figure(figure, out_dir: Path, stem: str, formats: tuple[str, ...] = FIGURE_FORMATS) -> list[str]:
    paths = []
    for extension in formats:
        path = out_dir / f"{stem}.{extension}"
        figure.savefig(path, dpi=120)
        paths.append(str(path))
    return paths


def parse_irreducible(pairs: list[str]) -> dict[str, float]:
    """['test_loss_last=4.5', ...] -> {'test_loss_last': 4.5} (the VAR paper fits reducible loss)."""
    # Here, not at the top: pandas and scipy load when `varscale fit` runs, not at every start.
    from analysis.study_fits import METRICS

    parsed = {}
    for pair in pairs:
        metric, separator, value = pair.partition("=")
        if not separator or metric not in METRICS:
            raise ValueError(f"--irreducible {pair!r}: expected METRIC=VALUE with METRIC one of {list(METRICS)}")
        try:
            parsed[metric] = float(value)
        except ValueError:
            raise ValueError(f"--irreducible {pair!r}: {value!r} is not a number") from None
    return parsed


def fit_study(
    study: str,
    tracking_uri: str | None = None,
    out_dir: str | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    log_to_mlflow: bool = True,
    echo: bool = True,
    irreducible: dict[str, float] | None = None,
    svg: bool = False,
) -> dict:
    """Loads, fits, writes figures and results under out_dir (default fits/<study>), logs them to the
    parent run, and returns the results dict (with 'files' and 'out_dir'). irreducible: per-metric
    constant subtracted before the VAR-form fits. svg: also write each figure as SVG."""
    # Here, not at the top: the fits, figures and MLflow load when `varscale fit` runs, not at
    # every `varscale` start (the CLI imports this module to register the subcommand).
    from analysis.loader import load_study as load_study_frame
    from analysis.report import law_table_text, report_figures, report_results
    from analysis.study_fits import fit_study_laws
    from orchestration.tracking.fit_results import TrackingWriteError, log_fit_results

    if n_bootstrap != 0 and n_bootstrap < 2:
        raise ValueError(f"--bootstrap must be 0 (no bootstrap) or at least 2 resamples, got {n_bootstrap}")
    name, tracking_uri = resolve_study(study, tracking_uri)
    study_frame = load_study_frame(name, tracking_uri)
    fits = fit_study_laws(study_frame, n_bootstrap=n_bootstrap, seed=seed, irreducible=irreducible)
    out = Path(out_dir or Path("fits") / name)
    out.mkdir(parents=True, exist_ok=True)
    results = report_results(study_frame, fits, tracking_uri)
    table = fits.table()
    formats = FIGURE_FORMATS + ((VECTOR_FORMAT,) if svg else ())
    files = [
        path
        for stem, figure in report_figures(study_frame, fits).items()
        for path in _save_figure(figure, out, stem, formats)
    ]
    table.to_csv(out / "laws.csv", index=False)
    study_frame.trials.to_csv(out / "trials.csv", index=False)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    files += [str(out / "laws.csv"), str(out / "trials.csv"), str(out / "results.json")]
    law_table = law_table_text(fits)
    if echo:
        print(f"study {name}: {len(study_frame.fit_trials())} completed of {len(study_frame.trials)} trials")
        print(law_table)
        print(f"wrote {len(files)} files to {out}")
    if log_to_mlflow:
        try:
            results["parent_run_id"] = log_fit_results(study_frame, fits, tracking_uri, files, law_table)
        except TrackingWriteError as error:
            # the fits are done and saved; only their copy in MLflow is missing
            raise FitLoggingError(f"the fits are in {out}, but {error}; or pass --no-mlflow") from None
    results["files"], results["out_dir"] = files, str(out)
    return results


def _handle(args: argparse.Namespace) -> int:
    try:
        fit_study(
            args.study,
            tracking_uri=args.tracking_uri,
            out_dir=args.out,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
            log_to_mlflow=not args.no_mlflow,
            irreducible=parse_irreducible(args.irreducible),
            svg=args.svg,
        )
    except (AnalysisError, ValueError, FileNotFoundError, FitLoggingError, PermissionError) as error:
        # Bad input (unknown study, missing file, unusable data) or storage that refuses the
        # results: the message says what; no traceback.
        print(f"varscale fit: error: {error}", file=sys.stderr)
        return 2
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Adds `fit` to the CLI's subparsers (called by orchestration/cli.py)."""
    parser = subparsers.add_parser(
        "fit",
        help="fit a study's scaling laws, save figures and results, log them to MLflow",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("study", help="study name (MLflow experiment) or path to a studies/*.yaml file")
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: the study file's, else MLFLOW_TRACKING_URI)"
    )
    parser.add_argument("--out", default=None, help="output folder (default: fits/<study>)")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples over trials (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument(
        "--irreducible",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="subtract a known irreducible term before the VAR-form fit, e.g. "
        "test_loss_last=4.5 (the paper fits reducible loss); repeatable",
    )
    parser.add_argument("--no-mlflow", action="store_true", help="write files only; do not log to the parent run")
    parser.add_argument("--svg", action="store_true", help="also write each figure as SVG (vector, e.g. for a paper)")
    parser.set_defaults(handler=_handle)
    return parser
