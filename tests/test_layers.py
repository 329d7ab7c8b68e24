"""The layers stay clean: the model knows no Ray/MLflow/pandas, analysis knows no torch/Ray,
only analysis/loader.py reads MLflow inside analysis, and inside orchestration the
sub-packages depend one way:

    study  <-  tracking  <-  execution  <-  commands  <-  cli

A module may import orchestration modules of its own sub-package or of those to its left,
never to its right (the study knows nothing of MLflow runs or Ray; tracking knows nothing of
Ray tasks; ...). The shared names of the MLflow schema live in analysis (the lower layer), in
modules that import nothing heavy, so orchestration can use them in every worker."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "var_model": {"ray", "mlflow", "pandas", "orchestration", "analysis"},
    "analysis": {"torch", "ray", "var_model", "orchestration"},
    # The spec and the plan are pure: no tracking store, no cluster.
    "orchestration/study": {"ray", "mlflow"},
    # MLflow runs, not Ray tasks.
    "orchestration/tracking": {"ray"},
}

# Orchestration's sub-packages from the bottom up; `cli` is orchestration/cli.py.
ORCHESTRATION_ORDER = ("study", "tracking", "execution", "commands", "cli")


def _imported_modules(path: Path) -> set[str]:
    """Every absolute module name `path` imports, anywhere in the file (functions included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def _imported_top_level_modules(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imported_modules(path)}


def _orchestration_part(module_or_path: str) -> str | None:
    """'orchestration.study.spec' or 'orchestration/study/spec.py' -> 'study'; the package's own
    __init__ has no part."""
    parts = module_or_path.replace("/", ".").removesuffix(".py").split(".")
    if parts[0] != "orchestration" or len(parts) < 2 or parts[1] == "__init__":
        return None
    return parts[1]


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


def test_orchestration_sub_packages_depend_one_way():
    paths = sorted((ROOT / "orchestration").rglob("*.py"))
    parts = {_orchestration_part(str(path.relative_to(ROOT))) for path in paths} - {None}
    assert parts == set(ORCHESTRATION_ORDER), f"place every sub-package in ORCHESTRATION_ORDER: {parts}"
    violations = []
    for path in paths:
        importer = _orchestration_part(str(path.relative_to(ROOT)))
        if importer is None:
            continue
        for module in _imported_modules(path):
            imported = _orchestration_part(module)
            if imported and ORCHESTRATION_ORDER.index(imported) > ORCHESTRATION_ORDER.index(importer):
                violations.append(f"{path.relative_to(ROOT)} ({importer}) imports {module} ({imported})")
    assert not violations, "imports against the order " + " <- ".join(ORCHESTRATION_ORDER) + f": {violations}"


def test_the_shared_names_load_without_pandas_or_matplotlib():
    # Every trial worker and every CLI start imports these; they must stay cheap.
    code = (
        "import sys, analysis.mlflow_schema, analysis.text; "
        "print(sorted({'pandas', 'scipy', 'matplotlib', 'mlflow', 'torch'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"
