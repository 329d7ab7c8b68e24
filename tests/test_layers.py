"""The layers stay clean: the model knows no Ray/MLflow/pandas, analysis knows no torch/Ray,
and only analysis/loader.py reads MLflow inside analysis."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "var_model": {"ray", "mlflow", "pandas", "orchestration", "analysis"},
    "analysis": {"torch", "ray", "var_model", "orchestration"},
}


def _imported_top_level_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_layers(package):
    violations = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imported_top_level_modules(path) & FORBIDDEN[package]
        if bad:
            violations[str(path.relative_to(ROOT))] = sorted(bad)
    assert not violations, f"layer violations: {violations}"


def test_only_the_loader_reads_mlflow_in_analysis():
    readers = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "analysis").rglob("*.py"))
        if "mlflow" in _imported_top_level_modules(path)
    ]
    assert readers in ([], ["analysis/loader.py"]), readers
