"""environment.yml (conda) and pyproject.toml (pip) must name the same packages and pins."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", requirement.strip()).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def pip_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["test"]
    return dict(map(_split, reqs))


def conda_requirements() -> tuple[list[str], dict[str, str]]:
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    conda_names = [_split(d)[0] for d in deps if isinstance(d, str)]
    return conda_names, dict(map(_split, pip_section))


def test_environment_yml_and_pyproject_name_the_same_packages_and_pins():
    _, conda_pip = conda_requirements()
    assert conda_pip == pip_requirements()


def test_torch_is_pinned_and_graphviz_binary_comes_with_conda():
    conda_names, _ = conda_requirements()
    assert pip_requirements()["torch"] == "==2.13.0"
    assert pip_requirements()["transformers"].startswith(">=5")
    assert "graphviz" in conda_names
