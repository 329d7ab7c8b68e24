"""`varscale fit STUDY`: fit a study's scaling laws, print them, save figures and results, and log
them to the study's MLflow parent run.

    varscale fit studies/smoke.yaml                  # a study file: its name and tracking_uri are used
    varscale fit my-study --tracking-uri sqlite:////abs/path/mlflow.db --out fits/my-study --bootstrap 500

The fitting itself is `analysis.fit_study_laws` (pure); this module only does I/O: load, write
PNG + SVG figures, results.json, laws.csv, trials.csv, then log those files as artifacts under
`fits/` of the parent run (tags varscale.kind=study, varscale.study=<name>; created if missing), the
key numbers as metrics (`fit.<metric>.<N|C>.alpha` ...) and each law's text as a tag. Tags, not
params: MLflow refuses to re-log a param with a new value, and a refit after more trials changes it.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import yaml

KIND_TAG, STUDY_TAG = "varscale.kind", "varscale.study"
FIGURE_FORMATS = ("png", "svg")


def resolve_study(study: str, tracking_uri: str | None) -> tuple[str, str | None]:
    """STUDY may be a study name or a path to a studies/*.yaml file (then its name and tracking_uri,
    unless --tracking-uri overrides it)."""
    path = Path(study)
    if not (path.suffix in (".yaml", ".yml") or path.is_file()):
        return study, tracking_uri
    if not path.is_file():
        raise FileNotFoundError(f"study file {study!r} does not exist")
    try:
        # The study-spec parser resolves the default tracking URI (the study's storage) exactly as
        # `varscale run` does, so fit reads the store the run wrote.
        from orchestration.study_spec import load_study as load_study_spec

        spec = load_study_spec(str(path))
        return spec.name, tracking_uri or spec.tracking_uri
    except ImportError:
        return read_name_and_tracking_uri(path, tracking_uri)


def read_name_and_tracking_uri(path: Path, tracking_uri: str | None = None) -> tuple[str, str | None]:
    """The fallback when the full study-spec parser is unavailable: just the two top-level keys."""
    mapping = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(mapping, dict) or "name" not in mapping:
        raise ValueError(f"study file {str(path)!r} has no top-level 'name:' key")
    return str(mapping["name"]), tracking_uri or mapping.get("tracking_uri")


def _save_figure(figure, out_dir: Path, stem: str) -> list[str]:
    paths = []
    for extension in FIGURE_FORMATS:
        path = out_dir / f"{stem}.{extension}"
        figure.savefig(path, dpi=120)
        paths.append(str(path))
    return paths


def _figures(study_frame, fits, out_dir: Path) -> list[str]:
    import analysis

    trials, curves = study_frame.fit_trials(), study_frame.fit_curves()
    written = []
    for budget in fits.budgets:
        size_laws = fits.size_laws(budget)
        if not size_laws:
            continue
        rows = trials[trials["trial_key"].isin(next(iter(size_laws.values())).trial_keys)]
        stem = "scaling_vs_size" if len(fits.budgets) == 1 else f"scaling_vs_size_{_file_label(budget)}"
        written += _save_figure(analysis.plot_scaling_vs_size(
            rows, {metric: law.fit for metric, law in size_laws.items()},
            {metric: law.bootstrap for metric, law in size_laws.items() if law.bootstrap is not None}), out_dir, stem)
    for metric, law in fits.compute_laws().items():
        written += _save_figure(analysis.plot_frontier(curves, law.frontier, law.bootstrap), out_dir, f"frontier_{metric}")
    if fits.per_scale:
        # Per-scale laws are fitted at the largest budget: draw those trials only.
        largest = trials[trials["trial_key"].isin(
            next(iter(fits.size_laws().values())).trial_keys)] if fits.size_laws() else trials
        written += _save_figure(analysis.plot_per_scale_loss(largest, fits.per_scale), out_dir, "per_scale_loss")
    if not curves.empty and (curves["metric"] == "test_loss_last").any():
        written += _save_figure(analysis.plot_training_curves(curves), out_dir, "training_curves")
    extrapolations = {f"{law.metric} vs {law.against}" + (f" ({law.budget})" if law.budget != "all" else ""):
                      law.extrapolation for law in fits.laws if law.extrapolation is not None}
    if extrapolations:
        written += _save_figure(analysis.plot_predicted_vs_actual(extrapolations), out_dir, "predicted_vs_actual")
    return written


def _file_label(budget: str) -> str:
    return "".join(character if character.isalnum() or character in "-." else "_" for character in budget)


def _finite_or_none(value):
    return value if isinstance(value, (int, str)) or (isinstance(value, float) and math.isfinite(value)) else None


def _results(study_frame, fits, tracking_uri) -> dict:
    laws = []
    for law in fits.laws:
        entry = {key: _finite_or_none(value) for key, value in law.row().items()}
        if law.fit is not None:
            entry["fit"] = law.fit.to_dict()
        if law.bootstrap is not None:
            entry["bootstrap"] = {k: v for k, v in law.bootstrap.to_dict().items() if k != "prediction_intervals"}
        if law.extrapolation is not None:
            entry["extrapolation"] = law.extrapolation.to_dict()
        laws.append(entry)
    isoflop = {metric: {"n_exponent": fit.n_exponent, "d_exponent": fit.d_exponent, "warnings": list(fit.warnings),
                        "budgets": fit.budgets.to_dict(orient="records")} for metric, fit in fits.isoflop.items()}
    parametric = {}
    for metric, fit in fits.parametric.items():
        bootstrap = fits.parametric_bootstrap.get(metric)
        parametric[metric] = {**fit.to_dict(), "n_exponent": fit.n_exponent, "d_exponent": fit.d_exponent,
                              "intervals": None if bootstrap is None else
                              {name: list(interval) for name, interval in bootstrap.intervals.items()}}
    from orchestration.tracking import redact_uri

    # results.json is saved and logged as an artifact: never with the URI's user:password.
    return {"study": fits.study, "tracking_uri": tracking_uri and redact_uri(tracking_uri),
            "parent_run_id": study_frame.parent_run_id,
            "parametric": parametric,
            "n_trials": int(len(study_frame.trials)),
            "status_counts": study_frame.trials["status"].value_counts().to_dict(),
            "options": fits.options, "budgets": list(fits.budgets), "laws": laws, "isoflop": isoflop,
            "per_scale": {name: fit.to_dict() for name, fit in fits.per_scale.items()}}


def _format_table(fits) -> str:
    table = fits.table()
    lines = [f"{'metric':<16} {'vs':<2} {'budget':<14} {'law':<48} {'alpha [95% CI]':<32} {'r':>8} {'n':>4} "
             f"{'holdout err':>11}"]
    for row in table[table["error"].isna()].itertuples():
        interval = f"[{row.alpha_low:.4g}, {row.alpha_high:.4g}]" if math.isfinite(row.alpha_low) else ""
        holdout = f"{row.holdout_relative_error:+.2%}" if math.isfinite(row.holdout_relative_error) else "-"
        estimate = f"{row.alpha:.4g} {interval}"
        lines.append(f"{row.metric:<16} {row.against:<2} {row.budget:<14} {row.law:<48} {estimate:<32} "
                     f"{row.r:>8.4f} {row.n_points:>4} {holdout:>11}")
    for row in table[table["error"].notna()].itertuples():
        lines.append(f"{row.metric:<16} {row.against:<2} {row.budget:<14} not fitted: {row.error}")
    for metric, fit in fits.isoflop.items():
        lines.append(f"IsoFLOP {metric}: N_opt ~ C^{fit.n_exponent:.3f}, D_opt ~ C^{fit.d_exponent:.3f} "
                     f"({len(fit.budgets)} budgets; grid-bias caveat in results.json)")
    for metric, fit in fits.parametric.items():
        lines.append(f"L(N, D) {metric}: E={fit.E:.4g} + {fit.A:.4g}/N^{fit.alpha:.3f} + {fit.B:.4g}/D^{fit.beta:.3f}; "
                     f"N_opt ~ C^{fit.n_exponent:.3f}" + (f"; warnings: {list(fit.warnings)}" if fit.warnings else ""))
    return "\n".join(lines)


def _log_to_parent(study_frame, fits, tracking_uri, files: list[str]) -> str:
    import time

    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    run_id = study_frame.parent_run_id
    if run_id is None:
        run_id = client.create_run(study_frame.experiment_id, run_name=study_frame.study,
                                   tags={KIND_TAG: "study", STUDY_TAG: study_frame.study}).info.run_id
    for path in files:
        client.log_artifact(run_id, path, artifact_path="fits")
    now, metrics, tags = int(time.time() * 1000), [], []
    for law in fits.laws:
        if law.fit is None:
            continue
        budget = f".{_file_label(law.budget)}" if len(fits.budgets) > 1 and law.against == "N" else ""
        prefix = f"fit.{law.metric}.{law.against}{budget}"
        row = law.row()
        for name in ("alpha", "beta", "r", "alpha_low", "alpha_high", "holdout_relative_error"):
            if math.isfinite(row[name]):
                metrics.append(Metric(f"{prefix}.{name}", float(row[name]), now, 0))
        tags.append(RunTag(f"{prefix}.law", row["law"]))
    for metric, fit in fits.parametric.items():
        for name, value in fit.parameters().items():
            metrics.append(Metric(f"fit.{metric}.ND.{name}", float(value), now, 0))
    client.log_batch(run_id, metrics=metrics, tags=tags)  # one transaction, not one call per number
    return run_id


def parse_irreducible(pairs: list[str]) -> dict[str, float]:
    """['test_loss_last=4.5', ...] -> {'test_loss_last': 4.5} (the VAR paper fits reducible loss)."""
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


def fit_study(study: str, tracking_uri: str | None = None, out_dir: str | None = None, n_bootstrap: int = 200,
              seed: int = 0, log_to_mlflow: bool = True, echo: bool = True,
              irreducible: dict[str, float] | None = None) -> dict:
    """Loads, fits, writes figures and results under out_dir (default fits/<study>), logs them to the
    parent run, and returns the results dict (with 'files' and 'out_dir'). irreducible: per-metric
    constant subtracted before the VAR-form fits."""
    import analysis

    if n_bootstrap != 0 and n_bootstrap < 2:
        raise ValueError(f"--bootstrap must be 0 (no bootstrap) or at least 2 resamples, got {n_bootstrap}")
    name, tracking_uri = resolve_study(study, tracking_uri)
    study_frame = analysis.load_study(name, tracking_uri)
    fits = analysis.fit_study_laws(study_frame, n_bootstrap=n_bootstrap, seed=seed, irreducible=irreducible)
    out = Path(out_dir or Path("fits") / name)
    out.mkdir(parents=True, exist_ok=True)
    results = _results(study_frame, fits, tracking_uri)
    table = fits.table()
    files = _figures(study_frame, fits, out)
    table.to_csv(out / "laws.csv", index=False)
    study_frame.trials.to_csv(out / "trials.csv", index=False)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    files += [str(out / "laws.csv"), str(out / "trials.csv"), str(out / "results.json")]
    if echo:
        print(f"study {name}: {len(study_frame.fit_trials())} completed of {len(study_frame.trials)} trials")
        print(_format_table(fits))
        print(f"wrote {len(files)} files to {out}")
    if log_to_mlflow:
        results["parent_run_id"] = _log_to_parent(study_frame, fits, tracking_uri, files)
    results["files"], results["out_dir"] = files, str(out)
    return results


def _handle(args: argparse.Namespace) -> int:
    from analysis.errors import AnalysisError

    try:
        fit_study(args.study, tracking_uri=args.tracking_uri, out_dir=args.out, n_bootstrap=args.bootstrap,
                  seed=args.seed, log_to_mlflow=not args.no_mlflow, irreducible=parse_irreducible(args.irreducible))
    except (AnalysisError, ValueError, FileNotFoundError) as error:
        # Bad input (unknown study, missing file, unusable data): the message says what; no traceback.
        print(f"varscale fit: error: {error}", file=sys.stderr)
        return 2
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Adds `fit` to the CLI's subparsers (called by orchestration/cli.py)."""
    parser = subparsers.add_parser(
        "fit", help="fit a study's scaling laws, save figures and results, log them to MLflow",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="study name (MLflow experiment) or path to a studies/*.yaml file")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: the study file's, "
                        "else MLFLOW_TRACKING_URI)")
    parser.add_argument("--out", default=None, help="output folder (default: fits/<study>)")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples over trials (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--irreducible", action="append", default=[], metavar="METRIC=VALUE",
                        help="subtract a known irreducible term before the VAR-form fit, e.g. "
                        "test_loss_last=4.5 (the paper fits reducible loss); repeatable")
    parser.add_argument("--no-mlflow", action="store_true", help="write files only; do not log to the parent run")
    parser.set_defaults(handler=_handle)
    return parser
