"""Packaging: environment.yml and pyproject.toml agree, the core needs only the standard
library, and a built wheel replays the shipped Mooncake trace on its own."""
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CORE = ["pages", "radix_cache", "eviction", "router", "request", "scheduler", "forward",
        "cost_model", "engine", "replay", "workloads", "lab", "cluster", "block_hash", "hicache"]
HEAVY = ["torch", "transformers", "tokenizers", "numpy", "jupyterlab", "IPython", "ipywidgets",
         "matplotlib", "graphviz", "pygments"]


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", requirement.strip()).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def pip_requirements(extras=("model", "lab", "test", "book", "cluster")) -> dict[str, str]:
    reqs = PROJECT["dependencies"] + [r for e in extras for r in PROJECT["optional-dependencies"][e]]
    return dict(map(_split, reqs))


def conda_pip_section() -> list[str]:
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    return next(d["pip"] for d in deps if isinstance(d, dict))


def conda_requirements() -> tuple[list[str], dict[str, str]]:
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda_names = [_split(d)[0] for d in deps if isinstance(d, str)]
    return conda_names, dict(_split(r) for r in conda_pip_section() if not r.startswith("-"))


def locked() -> dict[str, str]:
    """requirements.lock: package -> the tested version."""
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    pins = (re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)$", line) for line in lines if line and not line.startswith("#"))
    return {_split(m[1])[0]: m[2] for m in pins}


def test_environment_yml_and_pyproject_name_the_same_packages_and_pins():
    _, conda_pip = conda_requirements()
    assert conda_pip == pip_requirements()


def test_torch_is_pinned_and_graphviz_binary_comes_with_conda():
    conda_names, _ = conda_requirements()
    assert pip_requirements()["torch"] == "==2.13.0"
    assert pip_requirements()["transformers"].startswith(">=5")
    assert "graphviz" in conda_names


def test_one_python_floor_everywhere():
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    assert PROJECT["requires-python"] == ">=3.11" and "python=3.11" in conda
    assert sys.version_info >= (3, 11)


def test_the_makefile_installs_the_faithful_extras_pin():
    (sglang,) = PROJECT["optional-dependencies"]["faithful"]
    assert f"SGLANG_PIN := {sglang}" in (ROOT / "Makefile").read_text()


def test_the_reference_release_is_the_faithful_pin_unless_make_faithful_asks_for_another(monkeypatch):
    from radixlib.reference import pinned_version, reference_sglang
    (sglang,) = PROJECT["optional-dependencies"]["faithful"]
    monkeypatch.delenv("RADIXLIB_SGLANG", raising=False)
    assert f"sglang=={pinned_version('sglang', 'faithful')}" == sglang
    assert reference_sglang() == pinned_version("sglang", "faithful")
    monkeypatch.setenv("RADIXLIB_SGLANG", "0.5.99")
    assert reference_sglang() == "0.5.99"


def test_the_makefile_installs_every_extra_the_tests_need():
    """`make test` must bring the book builder and the real router, or their tests would skip
    (REQUIRE_BROWSER=1 / REQUIRE_ROUTER=1 fail them instead)."""
    (router,) = PROJECT["optional-dependencies"]["cluster"]
    assert router == "sglang-router==0.3.2"
    makefile = (ROOT / "Makefile").read_text()
    assert "EXTRAS := model,lab,test,book,cluster" in makefile and "-e '.[$(EXTRAS)]'" in makefile


def test_every_pyproject_requirement_is_locked_at_a_version_it_allows():
    from packaging.specifiers import SpecifierSet
    lock = locked()
    everything = pip_requirements(tuple(PROJECT["optional-dependencies"]))
    for name, spec in everything.items():
        assert name in lock, f"{name} is required by pyproject.toml but not in requirements.lock"
        assert lock[name] in SpecifierSet(spec), f"requirements.lock has {name}=={lock[name]}, pyproject wants {spec}"
    assert lock["pip"] and lock["setuptools"]               # the installers are pinned too


def test_every_install_command_takes_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCK   := requirements.lock" in makefile
    installs = [line for line in makefile.splitlines() if line.strip().startswith("$(PIP)")]
    assert installs and all("-c $(LOCK)" in line for line in installs), installs
    assert "-c requirements.lock" in conda_pip_section()     # conda users get the same versions


def test_this_environment_is_the_locked_one():
    """What the tests run on is what the lock names (fails under `make upgrade-check`, by design)."""
    from importlib.metadata import version
    lock = locked()
    moved = {name: (lock[name], version(name)) for name in pip_requirements()
             if version(name).split("+")[0] != lock[name]}
    assert not moved, f"installed versions differ from requirements.lock: {moved}"


def test_the_core_and_a_model_free_engine_import_no_heavy_package():
    code = (f"import sys\nfor m in {CORE!r}: __import__('radixlib.' + m)\n"
            "from radixlib.engine import Engine\nfrom radixlib.cost_model import CostModel\n"
            "Engine(executor=CostModel(), num_pages=16, page_size=4).generate([[1, 2, 3]])\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_a_built_wheel_replays_the_shipped_trace(tmp_path):
    """A non-editable install (no dependencies at all) finds the trace as package data."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", tmp_path / "dist", ROOT], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("radixlib-*.whl")
    venv.create(tmp_path / "env", with_pip=False)
    python = tmp_path / "env" / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel],
                   check=True, capture_output=True)
    code = ("from radixlib.replay import replay\nfrom radixlib.workloads import mooncake_prompts\n"
            "import radixlib\nrun = replay(mooncake_prompts(limit=10), num_pages=4096, page_size=16)\n"
            "print(radixlib.__file__, len(run.prompt_lens), run.hit_rate)")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    location, count, _ = out.stdout.split()
    assert str(tmp_path / "env") in location and count == "10"
