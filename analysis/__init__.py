"""varscale.analysis: load a study from MLflow, fit scaling laws with honest uncertainty, plot them.

Pure numpy / pandas / scipy / matplotlib; MLflow is read only inside `analysis.loader` (imported
lazily there, so `import analysis` stays fast).

    from analysis import load_study, fit_power_law, fit_chinchilla, BILLION
    study = load_study("var-imagenet-sweep", tracking_uri="sqlite:////abs/mlflow.db")
    trials = study.fit_trials()                       # completed trials only
    law = fit_power_law(trials.params_total, trials.test_loss_last, x_unit_scale=BILLION, x_unit="B")
    law.alpha, law.beta, law.r, law.predict(2e9)
"""
from analysis.allocation import Allocation, compute_for_loss, compute_optimal_allocation
from analysis.bootstrap import BootstrapResult, bootstrap_chinchilla, bootstrap_fit, prediction_band
from analysis.chinchilla import ChinchillaFit, StartGrid, fit_chinchilla
from analysis.errors import AnalysisError, DataError, FitError, StudyNotFoundError
from analysis.extrapolation import ExtrapolationResult, extrapolation_check
from analysis.frontier import FrontierFit, compute_frontier, fit_frontier, frontier_extrapolation_check
from analysis.isoflop import IsoFlopFit, fit_isoflop
from analysis.loader import StudyFrame, load_study
from analysis.plots import (
    plot_frontier,
    plot_per_scale_loss,
    plot_predicted_vs_actual,
    plot_scaling_vs_size,
    plot_training_curves,
)
from analysis.power_law import BILLION, PFLOP, PowerLawFit, fit_power_law
from analysis.study_fits import LawReport, StudyFits, fit_study_laws

__all__ = [
    "Allocation", "AnalysisError", "BILLION", "BootstrapResult", "ChinchillaFit", "DataError",
    "ExtrapolationResult", "FitError", "FrontierFit", "IsoFlopFit", "LawReport", "PFLOP", "PowerLawFit",
    "StartGrid", "StudyFits", "StudyFrame", "StudyNotFoundError", "bootstrap_chinchilla", "bootstrap_fit",
    "compute_for_loss", "compute_frontier", "compute_optimal_allocation", "extrapolation_check",
    "fit_chinchilla", "fit_frontier", "fit_isoflop", "fit_power_law", "fit_study_laws",
    "frontier_extrapolation_check", "load_study", "plot_frontier", "plot_per_scale_loss",
    "plot_predicted_vs_actual", "plot_scaling_vs_size", "plot_training_curves", "prediction_band",
]
