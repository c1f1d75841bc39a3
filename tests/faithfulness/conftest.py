"""The faithfulness tests need sglang==0.5.12 (``pip install --no-deps sglang==0.5.12``).

Without it they skip, with the reason on one line; with ``REQUIRE_SGLANG=1`` (set by
``.ci/run``) they fail instead.
"""
from __future__ import annotations

import pytest
from helpers import skip_or_fail

from radixlib.reference.sglang import load_sglang, sglang_unavailable


@pytest.fixture(scope="session", autouse=True)
def sglang_reference() -> None:
    skip_or_fail(sglang_unavailable(), "REQUIRE_SGLANG")
    load_sglang()
