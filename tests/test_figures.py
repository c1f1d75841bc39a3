"""The committed figures are what ``make figures`` (``figures/build.py``) produces now."""
from __future__ import annotations

import importlib.util
from pathlib import Path

BUILD = Path(__file__).resolve().parent.parent / "figures" / "build.py"


def load_build():
    spec = importlib.util.spec_from_file_location("figures_build", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_figures_are_up_to_date(tmp_path):
    build = load_build()
    for fresh in build.build(tmp_path):
        committed = build.FIGURES_DIR / fresh.name
        assert committed.exists(), f"{committed.name} is missing: run `make figures`"
        assert committed.read_bytes() == fresh.read_bytes(), f"{committed.name} is stale: run `make figures`"
