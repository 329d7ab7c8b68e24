"""analysis.report: what `varscale fit` and the notebook show and save."""

import analysis
from analysis.report import report_results

CREDENTIALED_URI = "https://alice:s3cret@mlflow.example.org:5443/"


def test_results_json_does_not_carry_tracking_uri_credentials(synthetic_study):
    # results.json is written to disk and logged as an MLflow artifact: a password in the
    # tracking URI must not end up in it.
    study_frame = analysis.load_study(synthetic_study["study"], synthetic_study["tracking_uri"])
    fits = analysis.fit_study_laws(study_frame, n_bootstrap=0, parametric=False)
    results = report_results(study_frame, fits, CREDENTIALED_URI)
    assert "s3cret" not in str(results) and "alice" not in str(results)
    assert results["tracking_uri"] == "https://mlflow.example.org:5443/"


def test_figures_share_one_mathtext_parser_and_draw_the_same_pixels():
    """plots' canvas hands every figure one mathtext parser (so log-axis tick labels are parsed
    once per study, not once per figure); the PNG must be byte for byte a plain Agg canvas's."""
    import io

    import numpy as np
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from analysis import plots

    curves = pd.DataFrame(
        {
            "trial_key": np.repeat(["a", "b"], 5),
            "metric": "test_loss_last",
            "value": np.linspace(2.9, 2.6, 10),
            "flops": np.tile(np.geomspace(1e12, 1e14, 5), 2),
            "params_total": np.repeat([1e5, 1e6], 5),
        }
    )

    def png(canvas_class) -> bytes:
        figure = plots.plot_training_curves(curves)
        canvas_class(figure)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=120)
        return buffer.getvalue()

    first, second = plots.plot_training_curves(curves), plots.plot_training_curves(curves)
    first.savefig(io.BytesIO(), format="png")
    second.savefig(io.BytesIO(), format="png")
    assert first.canvas.get_renderer().mathtext_parser is second.canvas.get_renderer().mathtext_parser
    assert png(plots._Canvas) == png(FigureCanvasAgg)
