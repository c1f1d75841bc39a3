"""The faithfulness tests need sglang==0.5.12 (``pip install --no-deps sglang==0.5.12``).

Without it they skip, with the reason on one line; with ``REQUIRE_SGLANG=1`` (set by
``.ci/run``) they fail instead.
"""
from __future__ import annotations

import os

import pytest

from .sglang_adapter import load_sglang, sglang_unavailable


@pytest.fixture(scope="session", autouse=True)
def sglang_reference() -> None:
    reason = sglang_unavailable()
    if reason and os.environ.get("REQUIRE_SGLANG") == "1":
        pytest.fail(f"{reason}, and REQUIRE_SGLANG=1 requires it", pytrace=False)
    if reason:
        pytest.skip(reason)
    load_sglang()
