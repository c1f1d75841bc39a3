"""SGLang 0.5.12's own modules, imported from the wheel, to compare radixlib against.

``pip install --no-deps sglang==0.5.12`` gives SGLang's source without the serving
stack. ``sglang.srt.mem_cache.radix_cache`` itself needs only torch, but its imports
reach further; without help the import fails. ``load_sglang`` registers stand-ins for
exactly the modules that make it fail (each one checked by removing it):

* ``sglang`` — the package ``__init__`` loads the frontend language and patches
  transformers (and needs orjson); the cache needs neither, so the package is
  registered bare, its submodules still found in the wheel.
* ``sglang.srt.mem_cache.allocator``, ``.memory_pool`` and
  ``sglang.srt.observability.metrics_collector`` — GPU pools and server metrics that
  pull in the server's utilities and model configs (orjson, transformers' processors);
  the cache uses them as type names only.
* ``triton``, ``msgspec``, ``pybase64`` — third-party, not installed with
  ``--no-deps``: kernels defined at import time, the base class of KV-event
  records, image helpers. These stand in only while importing, and only if missing.

SGLang stamps nodes with ``time.monotonic()``; we replace the module's ``time`` with a
logical clock so eviction order depends on the order of events alone, as in our cache.
No SGLang code is copied here: everything it does, it does from the wheel.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import importlib.util
import itertools
import sys
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

SGLANG_VERSION = "0.5.12"
RADIX_CACHE = "sglang.srt.mem_cache.radix_cache"

_SGLANG_STAND_INS = {          # module -> the names importers take from it
    "sglang.srt.mem_cache.allocator": ("BaseTokenToKVPoolAllocator",),
    "sglang.srt.mem_cache.memory_pool": ("ReqToTokenPool",),
    "sglang.srt.observability.metrics_collector": ("RadixCacheMetricsCollector",),
}


class _Struct:
    """Stand-in for ``msgspec.Struct``: a base class that accepts its class keywords."""

    def __init_subclass__(cls, **options):
        super().__init_subclass__()


_THIRD_PARTY_STAND_INS = {     # module -> attributes used at import time
    "triton": {"jit": lambda kernel: kernel},
    "triton.language": {"constexpr": object},
    "msgspec": {"Struct": _Struct},
    "pybase64": {},
}


def sglang_unavailable() -> str | None:
    """Why SGLang's RadixCache cannot be compared against; ``None`` when it can."""
    try:
        version = importlib.metadata.version("sglang")
    except importlib.metadata.PackageNotFoundError:
        return f"sglang=={SGLANG_VERSION} is not installed (pip install --no-deps sglang=={SGLANG_VERSION})"
    if version != SGLANG_VERSION:
        return f"sglang {version} is installed; the faithfulness tests need sglang=={SGLANG_VERSION}"
    return None


@functools.cache
def load_sglang() -> ModuleType:
    """SGLang's ``radix_cache`` module, with a logical clock in place of wall time.

    Its namespace holds everything a caller needs: ``RadixCache``, ``RadixKey``,
    ``CacheInitParams``, ``MatchPrefixParams``, ``InsertParams``, ``EvictParams``.
    """
    _register_bare_package("sglang")
    for name, names in _SGLANG_STAND_INS.items():
        sys.modules.setdefault(name, _module(name, {n: type(n, (), {}) for n in names}))
    with _third_party_stand_ins():
        radix_cache = importlib.import_module(RADIX_CACHE)
    radix_cache.time = LogicalClock()
    return radix_cache


class LogicalClock:
    """Takes the place of the ``time`` module inside SGLang's ``radix_cache``:
    ``monotonic()`` counts its calls; ``perf_counter`` (eviction metrics) stays real."""

    perf_counter = staticmethod(time.perf_counter)

    def __init__(self):
        self._ticks = itertools.count(1)

    def monotonic(self) -> int:
        return next(self._ticks)


def _register_bare_package(name: str) -> None:
    """Register package ``name`` without running its ``__init__``."""
    if name not in sys.modules:
        spec = importlib.util.find_spec(name)    # locates the package; does not import it
        package = ModuleType(name)
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules[name] = package


@contextlib.contextmanager
def _third_party_stand_ins() -> Iterator[None]:
    """Register the third-party stand-ins whose real module is missing, then remove them."""
    missing = [name for name in _THIRD_PARTY_STAND_INS
               if importlib.util.find_spec(name.partition(".")[0]) is None]
    for name in missing:
        sys.modules[name] = _module(name, _THIRD_PARTY_STAND_INS[name])
    try:
        yield
    finally:
        for name in missing:
            sys.modules.pop(name, None)


def _module(name: str, attributes: dict[str, Any]) -> ModuleType:
    module = ModuleType(name)
    module.__dict__.update(attributes)
    return module
