"""varscale.analysis: load a study from MLflow, fit scaling laws with honest uncertainty, plot them.

Pure numpy / pandas / scipy / matplotlib; MLflow is read only inside `analysis.loader`.

    from analysis import load_study, fit_power_law, fit_chinchilla, BILLION
    study = load_study("var-imagenet-sweep", tracking_uri="sqlite:////abs/mlflow.db")
    trials = study.fit_trials()                       # completed trials only
    law = fit_power_law(trials.params_total, trials.test_loss_last, x_unit_scale=BILLION, x_unit="B")
    law.alpha, law.beta, law.r, law.predict(2e9)

The names below are loaded on first use (PEP 562), not at `import analysis`: the orchestration
layer imports the light modules `analysis.mlflow_schema` and `analysis.text` in every trial
worker and CLI start, and importing this package must not cost them pandas, scipy and
matplotlib (seconds on a loaded machine).
"""

from __future__ import annotations

import importlib

# Each public name and the module that defines it.
_EXPORTS = {
    "Allocation": "allocation",
    "compute_for_loss": "allocation",
    "compute_optimal_allocation": "allocation",
    "BootstrapResult": "bootstrap",
    "bootstrap_chinchilla": "bootstrap",
    "bootstrap_fit": "bootstrap",
    "prediction_band": "bootstrap",
    "bootstrap_frontier": "frontier_bootstrap",
    "ChinchillaFit": "chinchilla",
    "StartGrid": "chinchilla",
    "fit_chinchilla": "chinchilla",
    "AnalysisError": "errors",
    "DataError": "errors",
    "FitError": "errors",
    "StudyNotFoundError": "errors",
    "ExtrapolationResult": "extrapolation",
    "extrapolation_check": "extrapolation",
    "FrontierFit": "frontier",
    "compute_frontier": "frontier",
    "fit_frontier": "frontier",
    "frontier_extrapolation_check": "frontier",
    "IsoFlopFit": "isoflop",
    "fit_isoflop": "isoflop",
    "StudyFrame": "loader",
    "load_study": "loader",
    "plot_frontier": "plots",
    "plot_per_scale_loss": "plots",
    "plot_predicted_vs_actual": "plots",
    "plot_scaling_vs_size": "plots",
    "plot_training_curves": "plots",
    "BILLION": "power_law",
    "PFLOP": "power_law",
    "PowerLawFit": "power_law",
    "fit_power_law": "power_law",
    "report_figures": "report",
    "law_table_text": "report",
    "report_results": "report",
    "LawReport": "study_fits",
    "StudyFits": "study_fits",
    "fit_study_laws": "study_fits",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"analysis.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
