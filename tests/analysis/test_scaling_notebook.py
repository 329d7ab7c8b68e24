"""notebooks/scaling_curves.ipynb runs end to end against a real study store and is stored clean."""

import os
from pathlib import Path

import nbformat

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "scaling_curves.ipynb"


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_notebook_executes_against_the_synthetic_study(synthetic_study, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("VARSCALE_STUDY", synthetic_study["study"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", synthetic_study["tracking_uri"])
    monkeypatch.setenv("VARSCALE_BOOTSTRAP", "10")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute(env=dict(os.environ))
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) >= 4  # size laws, frontier, per-scale, predicted vs actual
    text = "".join(output.get("text", "") for output in outputs)
    assert "needs ~" in text and "FLOPs" in text
