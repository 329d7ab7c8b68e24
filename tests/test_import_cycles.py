"""No import cycles among the project's modules, and no import hidden in a function to dodge one.

The graph is built from the source (AST), with every import in a file: at the top, inside
functions, under `if TYPE_CHECKING:`. An import of `a.b` is an edge to module `a.b`;
`from a.b import c` is an edge to `a.b.c` when that is a module, else to `a.b`. A package's
implicit import of its parents is not an edge (Python runs `a/__init__` first, and a parent
that is importing its own sub-modules is not a cycle).

A function-level import of a project module is allowed only where it is lazy for a stated
reason, listed in LAZY_IMPORTS below; any other one fails, and so does a listed place that no
longer has one (the list cannot rot). `analysis/__init__.py` loads its public names on first
use through importlib (PEP 562), not with import statements, so it adds no edges.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("var_model", "orchestration", "analysis")

# (file, function): why its project imports are inside the function.
LAZY_IMPORTS = {
    ("orchestration/cli.py", "_load"): "`varscale --help` and `dry-run` must not load MLflow or Ray",
    ("orchestration/cli.py", "_dry_run"): "`varscale --help` and `dry-run` must not load MLflow or Ray",
    ("orchestration/cli.py", "_launch"): "Ray and MLflow load only for the commands that use them",
    ("orchestration/cli.py", "_status"): "MLflow loads only for the commands that use it",
    ("orchestration/cli.py", "_ui"): "MLflow loads only for the commands that use it",
    ("orchestration/cli.py", "_demo"): "MLflow loads only for the commands that use it",
    ("orchestration/commands/fit.py", "parse_irreducible"): "pandas and scipy load when `varscale fit` runs, "
    "not at every `varscale` start",
    ("orchestration/commands/fit.py", "fit_study"): "the fits, figures and MLflow load when `varscale fit` "
    "runs, not at every `varscale` start",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _project_files() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path, modules: set[str]) -> list[tuple[str, ast.AST]]:
    """(imported project module, the import node) for every import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names if alias.name in modules]
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node, module, path.name == "__init__.py")
            for alias in node.names:
                child = f"{target}.{alias.name}"
                if child in modules:
                    found.append((child, node))
                elif target in modules:
                    found.append((target, node))
    return found


def _graph() -> dict[str, set[str]]:
    files = _project_files()
    modules = set(files)
    return {
        module: {target for target, _ in _imports(module, path, modules) if target != module}
        for module, path in files.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, components, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_the_graph_sees_the_project():
    graph = _graph()
    assert "orchestration.study.spec" in graph["orchestration.study.loading"]
    assert "analysis.mlflow_schema" in graph["analysis.loader"]
    assert len(graph) > 60


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, f"import cycles among project modules: {cycles}"


def _function_level_imports() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for module, path in _project_files().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    targets = _project_targets(node, module, path)
                    if targets:
                        found.setdefault((str(path.relative_to(ROOT)), function.name), []).extend(targets)
    return found


def _project_targets(node: ast.AST, module: str, path: Path) -> list[str]:
    """The project modules (or packages) one import statement names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] in PACKAGES]
    target = _absolute(node, module, path.name == "__init__.py")
    return [target] if target.split(".")[0] in PACKAGES else []


@pytest.mark.parametrize("package", ["var_model", "orchestration", "analysis"])
def test_function_level_imports_of_project_modules_are_only_the_listed_lazy_ones(package):
    found = {place: targets for place, targets in _function_level_imports().items() if place[0].startswith(package)}
    unlisted = {place: targets for place, targets in found.items() if place not in LAZY_IMPORTS}
    assert not unlisted, (
        f"imports inside functions {unlisted}: move them to the top of the file (break a "
        "cycle by moving the shared code down a layer), or list a real reason in LAZY_IMPORTS"
    )
    stale = sorted(place for place in set(LAZY_IMPORTS) - set(found) if place[0].startswith(package))
    assert not stale, f"LAZY_IMPORTS lists places without a function-level import: {stale}"
