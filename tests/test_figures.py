"""The committed figures are what ``python -m radixlib.figures`` produces now."""
from __future__ import annotations

from radixlib.figures import FIGURES_DIR, build


def test_committed_figures_are_up_to_date(tmp_path):
    for fresh in build(tmp_path):
        committed = FIGURES_DIR / fresh.name
        assert committed.exists(), f"{committed.name} is missing: run `make figures`"
        assert committed.read_bytes() == fresh.read_bytes(), f"{committed.name} is stale: run `make figures`"
