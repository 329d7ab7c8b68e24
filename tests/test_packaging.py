"""The conda environment and pyproject must name the same dependencies, and the install
recipe must keep torch pinned (an open 'torch' requirement pulls a multi-GB CUDA build)."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"]) + list(project["optional-dependencies"]["test"])
    return {_name(r): r.replace(" ", "") for r in requirements}


def _conda_requirements() -> dict[str, str]:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_entries = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    return {_name(r): r.replace(" ", "") for r in pip_entries if not r.startswith("-e")}


def test_environment_yml_lists_the_same_packages_as_pyproject():
    pyproject, conda = _pyproject_requirements(), _conda_requirements()
    assert set(pyproject) == set(conda), (
        f"only in pyproject: {sorted(set(pyproject) - set(conda))}; "
        f"only in environment.yml: {sorted(set(conda) - set(pyproject))}"
    )


def test_versions_agree_except_the_torch_pin():
    pyproject, conda = _pyproject_requirements(), _conda_requirements()
    different = {n for n in pyproject if n != "torch" and pyproject[n] != conda[n]}
    assert not different, {n: (pyproject[n], conda[n]) for n in different}


def test_torch_is_pinned_in_the_makefile_and_environment():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^TORCH_SPEC \?= torch==\d", makefile, re.MULTILINE)
    assert re.fullmatch(r"torch==[\d.]+", _conda_requirements()["torch"])


def test_python_version_agrees():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in environment["dependencies"]
