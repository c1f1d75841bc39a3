"""SGLang 0.5.12's own RadixCache, imported from the wheel, as the other side.

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
from types import ModuleType
from typing import Any, Iterator

import torch

from radixlib.pages import slots_of

from .ops import (Evict, Evicted, Insert, Lock, Match, Matched, Op, Pages, RawNode, Side,
                  Sizes, Unlock, depth_first)

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


class SlotRecorder:
    """Mock token-to-KV allocator. SGLang's cache only calls ``free`` (when it
    evicts a node); each call's slots are kept, in order."""

    device = "cpu"

    def __init__(self):
        self.freed: list[torch.Tensor] = []

    def free(self, slots: torch.Tensor) -> None:
        self.freed.append(slots)


class SGLangSide(Side):
    """SGLang's ``RadixCache``; a page ``p`` of the stream becomes its slots."""

    name = "SGLang"

    def __init__(self, page_size: int, policy: str):
        self.sg = load_sglang()
        self.page_size = page_size
        self.allocator = SlotRecorder()
        self.cache = self.sg.RadixCache(self.sg.CacheInitParams(
            disable=False, req_to_token_pool=None, token_to_kv_pool_allocator=self.allocator,
            page_size=page_size, eviction_policy=policy))
        self._nodes: dict[int, Any] = {}          # Match op index -> the node it returned

    def prepare(self, op: Op) -> tuple:
        sg = self.sg
        match op:
            case Match(tokens):
                return (sg.MatchPrefixParams(key=sg.RadixKey(list(tokens))),)
            case Insert(tokens, pages, priority):
                slots = torch.tensor(slots_of(pages, self.page_size, len(tokens)), dtype=torch.int64)
                return (sg.InsertParams(key=sg.RadixKey(list(tokens)), value=slots, priority=priority),)
            case Evict(num_tokens):
                return (sg.EvictParams(num_tokens=num_tokens),)
        return ()

    def call(self, index: int, op: Op, args: tuple) -> Any:
        match op:
            case Match():
                found = self.cache.match_prefix(*args)
                self._nodes[index] = found.last_device_node
                return found
            case Insert():
                return self.cache.insert(*args)
            case Lock(ref):
                return self.cache.inc_lock_ref(self._nodes[ref])
            case Unlock(ref):
                return self.cache.dec_lock_ref(self._nodes[ref])
            case Evict():
                self.allocator.freed.clear()
                return self.cache.evict(*args)
        return None                 # Alloc, Free: the caller's pool, not the cache's

    def result(self, op: Op, raw: Any) -> Matched | Evicted | int | None:
        match op:
            case Match():
                node = raw.last_device_node
                return Matched(len(raw.device_indices), self.pages(raw.device_indices), len(node.key))
            case Insert():
                return raw.prefix_len
            case Evict():
                return Evicted(raw.num_tokens_evicted, tuple(map(self.pages, self.allocator.freed)))
        return None                 # Lock, Unlock

    def sizes(self) -> Sizes:
        return Sizes(self.cache.evictable_size(), self.cache.protected_size())

    def total_size(self) -> int:
        return self.cache.total_size()

    def snapshot(self) -> Iterator[RawNode]:
        for node, depth in depth_first(self.cache.root_node):
            yield RawNode(depth, tuple(node.key.token_ids), self.pages(node.value), node.lock_ref,
                          node.hit_count, node.priority, node.last_access_time, node.creation_time)

    def pages(self, slots: torch.Tensor) -> Pages:
        """The pages whose slots ``slots`` are; ``ValueError`` unless they are whole pages."""
        ps = self.page_size
        pages = slots[::ps] // ps
        if ps > 1 and not torch.equal(slots, (pages[:, None] * ps + torch.arange(ps)).view(-1)):
            raise ValueError(f"SGLang returned slots that are not whole pages: {slots.tolist()[:32]}")
        return tuple(pages.tolist())


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
