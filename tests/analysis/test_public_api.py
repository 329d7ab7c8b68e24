"""The package surface: exports, a light import, and figures with the law in the legend."""

import subprocess
import sys

import numpy as np
import pandas as pd

import analysis
from analysis import BILLION, bootstrap_fit, fit_power_law, plot_scaling_vs_size


def test_every_exported_name_exists():
    assert all(hasattr(analysis, name) for name in analysis.__all__)


def test_importing_analysis_loads_neither_torch_nor_mlflow():
    code = "import sys, analysis; print(sorted({'torch', 'ray', 'mlflow', 'var_model'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_size_plot_shows_law_r_and_band():
    sizes = np.geomspace(2e7, 2e9, 6)
    trials = pd.DataFrame(
        {
            "params_total": sizes,
            "test_loss_last": (2.0 * sizes / BILLION) ** -0.23,
            "trial_key": [f"d{i}" for i in range(6)],
        }
    )
    fit = fit_power_law(trials["params_total"], trials["test_loss_last"], x_unit_scale=BILLION, x_unit="B")
    band = bootstrap_fit(
        fit_power_law, sizes, trials["test_loss_last"].to_numpy(), n_resamples=20, x_unit_scale=BILLION, x_unit="B"
    )
    figure = plot_scaling_vs_size(trials, {"test_loss_last": fit}, {"test_loss_last": band})
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend[0].startswith("test_loss_last = (2 N [B])^-0.23") and "r = -1.0000" in legend[0]
    assert "bootstrap band" in legend[1]
    assert figure.axes[0].get_xscale() == "log" and figure.axes[0].get_yscale() == "log"
