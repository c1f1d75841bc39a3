"""SGLang as the reference: its own code, from the installed wheel, beside ours.

The ``[faithful]`` extra (``pip install --no-deps sglang==0.5.12``) brings SGLang's
source without its serving stack; the tests and benchmarks import what they compare
from here, so neither reaches into the other.

    sglang.py        load SGLang's modules from the wheel (stand-ins for what fails to import)
    ops.py           the operations a stream is made of, and the outcomes the sides report
    sides.py         our RadixCache and SGLang's, each as one side of a comparison
    streams.py       seeded operation streams, played the way a serving engine plays them
    differential.py  run a stream through both sides; name the first difference
    gateway.py       sglang-router 0.3.2 (the [cluster] extra) run for real against mock
                     workers, beside radixlib.cluster's cache-aware policy

No SGLang code is copied here: everything SGLang does, it does from the wheel.
"""
from __future__ import annotations

import importlib.metadata
import os
import re


def pinned_version(distribution: str, extra: str) -> str:
    """The version radixlib pins ``distribution`` to in its ``extra`` (pyproject.toml, the one
    place a reference version is written down; the Makefile and the lock follow it, tested)."""
    for requirement in importlib.metadata.requires("radixlib") or []:
        found = re.fullmatch(rf'{re.escape(distribution)}==(\S+); extra == "{extra}"', requirement)
        if found:
            return found[1]
    raise LookupError(f"pyproject.toml's [{extra}] extra pins no {distribution}")


def reference_sglang() -> str:
    """The SGLang release the faithfulness tests compare against: the [faithful] pin, or the
    release ``make faithful SGLANG=x.y.z`` asks for (it sets ``RADIXLIB_SGLANG``)."""
    return os.environ.get("RADIXLIB_SGLANG") or pinned_version("sglang", "faithful")


def pinned_missing(distribution: str, version: str, install: str, needed_by: str) -> str | None:
    """Why ``distribution==version`` cannot be used here (``install`` says how to get it);
    ``None`` when exactly that version is installed."""
    try:
        found = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return f"{distribution}=={version} is not installed ({install})"
    if found != version:
        return f"{distribution} {found} is installed; {needed_by} needs {distribution}=={version}"
    return None
