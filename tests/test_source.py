"""The chapters' code displays: our source as it runs, SGLang's read from the wheel's files."""
from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import skip_or_fail

from radixlib.radix_cache import RadixCache
from radixlib.reference.sglang import SGLANG_VERSION, sglang_unavailable
from radixlib.source import beside, module_file, sglang_source, show_source

RADIX = "sglang.srt.mem_cache.radix_cache"


def test_show_source_is_the_library_source():
    src = show_source(RadixCache.lock)
    assert src.name == "radixlib.radix_cache.RadixCache.lock"
    assert src.code.startswith("def lock(self, node: TreeNode)")                 # dedented
    assert "<span" in src._repr_html_() and repr(src).startswith("# radixlib.radix_cache")


@pytest.fixture
def sglang():
    skip_or_fail(sglang_unavailable(), "REQUIRE_SGLANG")


def test_sglang_source_is_the_wheels_own_text(sglang):
    src = sglang_source(RADIX, "RadixCache.evict")
    assert src.name == f"{RADIX}.RadixCache.evict  (sglang {SGLANG_VERSION})"
    assert src.code.startswith("def evict(self")                                 # dedented
    file_lines = "\n".join(line if line.strip() else "" for line in module_file(RADIX).read_text().splitlines())
    assert "\n".join("    " + line if line else "" for line in src.code.splitlines()) in file_lines
    assert "heapq.heappop" in src.code


def test_reading_sglang_source_imports_no_sglang_module(sglang):
    code = (f"import sys\nfrom radixlib.source import sglang_source\nsglang_source({RADIX!r}, 'TreeNode')\n"
            "print([m for m in sys.modules if m.startswith('sglang')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_beside_puts_ours_left_and_sglangs_right(sglang):
    pair = beside(RadixCache.evict, RADIX, "RadixCache.evict")
    assert pair.left.name.startswith("radixlib.") and pair.right.name.startswith("sglang.")
    html = pair._repr_html_()
    assert html.count("<td") == 2 and html.index("radixlib.") < html.index("sglang.srt")
    assert "table-layout: fixed" in html and html.count("overflow-x: auto") == 2      # each half scrolls alone


def test_unknown_names_say_what_is_missing(sglang):
    with pytest.raises(LookupError, match="RadixCache.no_such_method is not defined"):
        sglang_source(RADIX, "RadixCache.no_such_method")
    with pytest.raises(ModuleNotFoundError, match="sglang.srt.no_such_module is not in the installed sglang"):
        sglang_source("sglang.srt.no_such_module", "X")
    with pytest.raises(ModuleNotFoundError, match="no_such_package is not installed"):
        module_file("no_such_package.x")
