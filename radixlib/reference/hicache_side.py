"""SGLang's own ``HiRadixCache`` beside radixlib's, on one operation stream.

``load_sglang_hicache`` imports ``mem_cache/hiradix_cache.py`` from the wheel. Its imports
need, beyond ``load_sglang``'s stand-ins, five GPU pool type names in the
``memory_pool`` stand-in (``MEMORY_POOL_TYPES``: type names and ``isinstance`` checks) and
the ``sgl_kernel.kvcacheio`` transfer kernels (import time only: the copies below never
run them). Its constructor runs as written, with three stand-ins in the module's namespace:

* ``HiCacheController`` -> ``SyncController``: the cache controller's own ``write``,
  ``load``, ``evict_device`` and ``evict_host`` (SGLang's code, so the same pool
  allocations), but each copy completes at once instead of on a CUDA stream: the
  acknowledgement is queued already done, and ``HiSGLangSide`` runs SGLang's own
  ``ready_to_load_host_cache`` and ``check_hicache_events`` after every operation, as the
  scheduler does between batches. No bytes move; the controller counts the tokens.
* ``MHATokenToKVPoolHost`` -> ``HostPool``: SGLang's ``HostKVCache`` (its sizing,
  ``alloc`` and ``free``) without tensors.
* ``time`` -> the logical clock ``load_sglang`` gives ``radix_cache``, shared, so the two
  modules' time stamps are ordered alike.

While the constructor runs, ``torch.distributed`` answers a world size of 1 and the host
memory check keeps no reserve (``_constructing``). The device pool is SGLang's own
paged allocator with ``need_sort=True``, as the server builds it: it hands out the same
pages as ``PageAllocator`` (SGLang's page ``p + 1`` is our page ``p``: its page 0 is a
padding slot). The host pools number their pages differently (SGLang's is first-in,
first-out), so host pages are compared by count.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import random
import sys
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace
from typing import Any, NamedTuple

import torch

from radixlib.hicache import HiMatch, HiRadixCache, host_pool_pages

from .ops import (
    CACHE_OPS,
    Alloc,
    Evict,
    Evicted,
    Free,
    Insert,
    Lock,
    Match,
    Op,
    Outcome,
    Pages,
    RawNode,
    Side,
    Tokens,
    Unlock,
    depth_first,
)
from .sglang import RADIX_CACHE, _module, _third_party_stand_ins, load_sglang
from .sides import RecordingAllocator, slot_tensor
from .streams import WORKLOADS, Caller, Request, play_requests

HIRADIX_CACHE = "sglang.srt.mem_cache.hiradix_cache"
MEMORY_POOL_TYPES = ("KVCache", "MambaPool", "MHATokenToKVPool", "MLATokenToKVPool", "NSATokenToKVPool")
KERNELS = ("transfer_kv_all_layer", "transfer_kv_all_layer_direct_lf_pf", "transfer_kv_all_layer_lf_pf",
           "transfer_kv_all_layer_lf_ph", "transfer_kv_all_layer_mla", "transfer_kv_all_layer_mla_lf_pf",
           "transfer_kv_direct", "transfer_kv_per_layer", "transfer_kv_per_layer_direct_pf_lf",
           "transfer_kv_per_layer_mla", "transfer_kv_per_layer_mla_pf_lf", "transfer_kv_per_layer_pf_lf",
           "transfer_kv_per_layer_ph_lf")


@functools.cache
def load_sglang_hicache() -> ModuleType:
    """SGLang's ``hiradix_cache`` module with the stand-ins above in its namespace."""
    radix_cache = load_sglang()
    memory_pool = sys.modules["sglang.srt.mem_cache.memory_pool"]
    for name in MEMORY_POOL_TYPES:
        if not hasattr(memory_pool, name):
            setattr(memory_pool, name, type(name, (), {}))
    with _third_party_stand_ins(), _kernel_stand_ins():
        hiradix = importlib.import_module(HIRADIX_CACHE)
    controller = sys.modules["sglang.srt.managers.cache_controller"]
    host_pool = sys.modules["sglang.srt.mem_cache.memory_pool_host"]
    hiradix.time = radix_cache.time
    logging.getLogger(HIRADIX_CACHE).setLevel(logging.ERROR)     # a failed load is an outcome here, not news
    hiradix.HiCacheController = _sync_controller(controller)
    hiradix.MHATokenToKVPoolHost = _host_pool(host_pool.HostKVCache)
    return hiradix


@contextlib.contextmanager
def _kernel_stand_ins() -> Iterator[None]:
    """``sgl_kernel.kvcacheio``'s names while importing, unless the real package is there."""
    if importlib.util.find_spec("sgl_kernel") is not None:
        yield
        return
    sys.modules["sgl_kernel"] = _module("sgl_kernel", {})
    sys.modules["sgl_kernel.kvcacheio"] = _module("sgl_kernel.kvcacheio", dict.fromkeys(KERNELS))
    try:
        yield
    finally:
        sys.modules.pop("sgl_kernel.kvcacheio")
        sys.modules.pop("sgl_kernel")


class _Done:
    """A CUDA event that has already fired."""

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        return None


def _sync_controller(controller: ModuleType) -> type:
    real = controller.HiCacheController

    class SyncController:
        """Stand-in for ``HiCacheController``: its own allocation code, copies done at once."""

        write, load, evict_device = real.write, real.load, real.evict_device

        def __init__(self, token_to_kv_pool_allocator, mem_pool_host, page_size, tp_group,
                     write_policy: str = "write_through_selective", **_: Any):
            self.mem_pool_device_allocator, self.mem_pool_host = token_to_kv_pool_allocator, mem_pool_host
            self.page_size, self.write_policy = page_size, write_policy
            self.write_queue, self.load_queue, self.ack_write_queue, self.ack_load_queue = [], [], [], []
            self.written_tokens = self.loaded_tokens = 0
            self.host_frees: list[int] = []       # tokens of each host eviction since the last clear

        def reset(self) -> None:
            for queue in (self.write_queue, self.load_queue, self.ack_write_queue, self.ack_load_queue):
                queue.clear()

        def start_writing(self) -> None:
            self.written_tokens += self._complete(self.write_queue, self.ack_write_queue)

        def start_loading(self) -> int:
            loaded = self._complete(self.load_queue, self.ack_load_queue)
            self.loaded_tokens += loaded
            return 0 if loaded else -1

        def evict_host(self, host_indices: torch.Tensor, backup_only: bool = True) -> int:
            self.host_frees.append(len(host_indices))
            return real.evict_host(self, host_indices, backup_only)

        def _complete(self, queue: list, acks: list) -> int:
            """Merge the queued operations (SGLang's ``merge_ops``), acknowledge them as done."""
            if not queue:
                return 0
            op = controller.CacheOperation.merge_ops(queue)
            queue.clear()
            acks.append(controller.HiCacheAck(_Done(), _Done(), op.node_ids))
            return len(op.host_indices)

    return SyncController


def _host_pool(host_kv_cache: type) -> type:
    class HostPool(host_kv_cache):
        """``MHATokenToKVPoolHost`` without tensors: ``HostKVCache``'s sizing, alloc and free."""

        def __init__(self, device_pool, host_to_device_ratio, host_size, page_size, layout, allocator_type=None):
            super().__init__(device_pool, host_to_device_ratio, host_size, page_size, layout,
                             pin_memory=False, device="cpu", allocator_type=allocator_type or "default")

        def get_size_per_token(self) -> int:
            return self.device_pool.bytes_per_token

        def init_kv_buffer(self) -> None:
            return None

        def _no_bytes(self, *args: Any, **kwargs: Any) -> None:
            raise NotImplementedError("the stand-in host pool holds no K/V")

        load_to_device_per_layer = backup_from_device_all_layer = _no_bytes
        get_data_page = get_dummy_flat_data_page = set_from_flat_data_page = _no_bytes

    return HostPool


@contextlib.contextmanager
def _constructing() -> Iterator[None]:
    """While the constructor runs: ``torch.distributed.get_world_size`` answers 1 (one
    tensor-parallel rank), and the host pool's memory check reserves nothing for the OS
    (``HICACHE_HOST_MEMORY_RESERVE_BYTES``, 10 GiB: the stand-in pool allocates no memory)."""
    host_pool = sys.modules["sglang.srt.mem_cache.memory_pool_host"]
    world_size, reserve = torch.distributed.get_world_size, host_pool.HICACHE_HOST_MEMORY_RESERVE_BYTES
    torch.distributed.get_world_size = lambda group=None: 1
    host_pool.HICACHE_HOST_MEMORY_RESERVE_BYTES = 0
    try:
        yield
    finally:
        torch.distributed.get_world_size, host_pool.HICACHE_HOST_MEMORY_RESERVE_BYTES = world_size, reserve


BYTES_PER_TOKEN = 1024      # the stand-in device pool's K/V bytes per token (sizes a host pool given in GB)


def sglang_hicache(num_pages: int, page_size: int, write_policy: str, eviction: str = "lru",
                   host_ratio: float = 2.0, host_size_gb: float = 0) -> Any:
    """SGLang's ``HiRadixCache`` over a device pool of ``num_pages`` pages (its own paged
    allocator, ``need_sort=True``), a host pool sized by its own rule, the stand-ins above."""
    hiradix = load_sglang_hicache()
    allocators = sys.modules["sglang.srt.mem_cache.allocator"]
    device_pool = hiradix.MHATokenToKVPool()
    device_pool.size, device_pool.bytes_per_token = num_pages * page_size, BYTES_PER_TOKEN
    device_pool.store_dtype, device_pool.start_layer, device_pool.end_layer = torch.bfloat16, 0, 1
    if page_size == 1:
        allocator = allocators.TokenToKVPoolAllocator(num_pages, torch.int64, "cpu", device_pool, need_sort=True)
    else:
        allocator = allocators.PagedTokenToKVPoolAllocator(num_pages * page_size, page_size, torch.int64, "cpu",
                                                           device_pool, need_sort=True)
    params = sys.modules[RADIX_CACHE].CacheInitParams(
        disable=False, req_to_token_pool=None, token_to_kv_pool_allocator=allocator, page_size=page_size,
        eviction_policy=eviction)
    server_args = SimpleNamespace(
        hicache_ratio=host_ratio, hicache_size=host_size_gb, hicache_mem_layout="layer_first",
        hicache_storage_backend=None, hicache_storage_backend_extra_config=None,
        hicache_storage_prefetch_policy="best_effort", hicache_write_policy=write_policy,
        hicache_io_backend="kernel", served_model_name="stand-in", extra_metric_labels=None)
    with _constructing():
        return hiradix.HiRadixCache(params, server_args)


# ------------------------------------------------------------------ operations
class LoadBack(NamedTuple):
    """Load back the host-only end of ``Match`` number ``ref`` (``init_load_back``)."""
    ref: int
    mem_quota: int | None = None


class EvictHost(NamedTuple):
    """Free at least ``num_tokens`` host tokens of host-only leaves."""
    num_tokens: int


class HiMatched(NamedTuple):
    """A ``Match``: device length and pages, the device node's edge length, the host-only run."""
    length: int
    pages: Pages
    node_len: int
    host_len: int


class Loaded(NamedTuple):
    """A ``LoadBack``: the device pages loaded (none if skipped), the end node's edge length."""
    pages: Pages
    node_len: int


class HostEvicted(NamedTuple):
    """An ``EvictHost``: host tokens freed, and each deleted node's tokens, in order."""
    freed: int
    frees: tuple[int, ...]


class HiSizes(NamedTuple):
    evictable: int
    protected: int
    host: int           # tokens with a host copy
    written: int        # tokens copied device -> host so far
    loaded: int         # tokens copied host -> device so far


HI_OPS = (*CACHE_OPS, LoadBack, EvictHost, Alloc)     # operations whose outcomes are compared


class HiSide(Side):
    """A two-tier cache under comparison: every operation in ``HI_OPS`` has an outcome."""

    def apply(self, index: int, op: Op) -> Outcome | None:
        raw = self.call(index, op, self.prepare(op))
        return Outcome(self.result(op, raw), self.sizes()) if isinstance(op, HI_OPS) else None

    def prepare(self, op: Op) -> tuple:
        return (op,)


class OursHiSide(HiSide):
    """radixlib's ``HiRadixCache``, its host pool sized as SGLang sizes it."""

    name = "radixlib"

    def __init__(self, num_pages: int, page_size: int, write_policy: str, eviction: str = "lru",
                 host_ratio: float = 2.0):
        self.allocator = RecordingAllocator(num_pages, page_size)
        self.host_allocator = RecordingAllocator(host_pool_pages(num_pages, page_size, host_ratio), page_size)
        self.cache = HiRadixCache(self.allocator, self.host_allocator, write_policy, eviction)
        self._nodes: dict[int, Any] = {}            # Match / LoadBack op index -> its node
        self._hosts: dict[int, Any] = {}            # Match op index -> the end of its host hit

    def call(self, index: int, op: Op, args: tuple) -> Any:
        cache = self.cache
        match op:
            case Match(tokens):
                found = cache.match_prefix(list(tokens))
                self._nodes[index], self._hosts[index] = found.node, found.host_node
                return found
            case LoadBack(ref, quota):
                pages, self._nodes[index] = cache.init_load_back(self._hosts[ref], quota)
                return pages, self._nodes[index]
            case Insert(tokens, pages, priority):
                return cache.insert(list(tokens), list(pages), priority)
            case Lock(ref) | Unlock(ref):
                return (cache.lock if isinstance(op, Lock) else cache.unlock)(self._nodes[ref])
            case Evict(num_tokens):
                self.allocator.freed.clear()
                return cache.evict(num_tokens)
            case EvictHost(num_tokens):
                self.host_allocator.freed.clear()
                return cache.evict_host(num_tokens)
            case Alloc(num_pages):
                return self.allocator.alloc(num_pages)
            case Free(pages):
                return self.allocator.free(list(pages))

    def result(self, op: Op, raw: Any) -> Any:
        match op:
            case Match():
                return HiMatched(raw.prefix_len, tuple(raw.pages), len(raw.node.key), raw.host_len)
            case LoadBack():
                pages, node = raw
                return Loaded(tuple(pages), len(node.key))
            case Evict():
                return Evicted(raw, tuple(map(tuple, self.allocator.freed)))
            case EvictHost():
                return HostEvicted(raw, tuple(len(p) * self.cache.page_size for p in self.host_allocator.freed))
            case Alloc():
                return tuple(raw)
        return raw

    def sizes(self) -> HiSizes:
        c = self.cache
        return HiSizes(c.evictable_size, c.protected_size, c.host_size, c.written_tokens, c.loaded_tokens)

    def total_size(self) -> int:
        return self.cache.total_size

    def snapshot(self) -> Iterator[RawNode]:
        for node, depth in depth_first(self.cache.root):
            device = None if node.evicted else tuple(node.pages)
            host = len(node.host_pages) * self.cache.page_size if node.backuped else 0
            yield RawNode(depth, tuple(node.key), (device, host), node.lock_ref, node.hits,
                          node.priority, node.last_access, node.created)


class SGLangHiSide(HiSide):
    """SGLang's ``HiRadixCache`` (``sglang_hicache``); after every operation, the scheduler's
    ``ready_to_load_host_cache`` and ``check_hicache_events``."""

    name = "SGLang"

    def __init__(self, num_pages: int, page_size: int, write_policy: str, eviction: str = "lru",
                 host_ratio: float = 2.0):
        self.sg = load_sglang_hicache()            # its namespace holds the *Params and RadixKey
        self.page_size = page_size
        self.cache = sglang_hicache(num_pages, page_size, write_policy, eviction, host_ratio)
        self.controller, self.host_pool = self.cache.cache_controller, self.cache.token_to_kv_pool_host
        self.allocator = self.controller.mem_pool_device_allocator
        self.device_frees: list[torch.Tensor] = []
        real_free = self.allocator.free
        self.allocator.free = lambda slots: (self.device_frees.append(slots), real_free(slots))[1]
        self._nodes: dict[int, Any] = {}
        self._matches: dict[int, Any] = {}

    def call(self, index: int, op: Op, args: tuple) -> Any:
        raw = self._call(index, op)
        self.cache.ready_to_load_host_cache()
        self.cache.check_hicache_events()
        return raw

    def _call(self, index: int, op: Op) -> Any:
        sg, cache = self.sg, self.cache
        match op:
            case Match(tokens):
                found = cache.match_prefix(sg.MatchPrefixParams(key=sg.RadixKey(list(tokens))))
                self._nodes[index], self._matches[index] = found.last_device_node, found
                return found
            case LoadBack(ref, quota):
                found = self._matches[ref]
                params = sg.InitLoadBackParams(best_match_node=found.best_match_node,
                                               host_hit_length=found.host_hit_length, mem_quota=quota)
                slots, self._nodes[index] = cache.init_load_back(params)
                return slots, self._nodes[index]
            case Insert(tokens, pages, priority):
                slots = slot_tensor(tuple(p + 1 for p in pages), self.page_size, len(tokens))
                return cache.insert(sg.InsertParams(key=sg.RadixKey(list(tokens)), value=slots, priority=priority))
            case Lock(ref):
                return cache.inc_lock_ref(self._nodes[ref])
            case Unlock(ref):
                return cache.dec_lock_ref(self._nodes[ref])
            case Evict(num_tokens):
                self.device_frees.clear()
                return cache.evict(sg.EvictParams(num_tokens=num_tokens))
            case EvictHost(num_tokens):
                self.controller.host_frees.clear()
                return cache.evict_host(num_tokens)
            case Alloc(num_pages):
                return self.allocator.alloc(num_pages * self.page_size)
            case Free(pages):
                return self.allocator.free(slot_tensor(tuple(p + 1 for p in pages), self.page_size,
                                                       len(pages) * self.page_size))

    def result(self, op: Op, raw: Any) -> Any:
        match op:
            case Match():
                node = raw.last_device_node
                return HiMatched(len(raw.device_indices), self.pages(raw.device_indices), len(node.key),
                                 raw.host_hit_length)
            case LoadBack():
                slots, node = raw
                return Loaded(self.pages(slots), len(node.key))
            case Insert():
                return raw.prefix_len
            case Evict():
                return Evicted(raw.num_tokens_evicted, tuple(map(self.pages, self.device_frees)))
            case EvictHost():
                return HostEvicted(sum(self.controller.host_frees), tuple(self.controller.host_frees))
            case Alloc():
                return self.pages(raw)
        return None

    def sizes(self) -> HiSizes:
        c = self.controller
        host = self.host_pool.size - self.host_pool.available_size()
        return HiSizes(self.cache.evictable_size(), self.cache.protected_size(), host,
                       c.written_tokens, c.loaded_tokens)

    def total_size(self) -> int:
        return self.cache.total_size()

    def snapshot(self) -> Iterator[RawNode]:
        for node, depth in depth_first(self.cache.root_node):
            device = None if node.evicted else self.pages(node.value)
            host = len(node.host_value) if node.backuped else 0
            yield RawNode(depth, tuple(node.key.token_ids), (device, host), node.lock_ref, node.hit_count,
                          node.priority, node.last_access_time, node.creation_time)

    def pages(self, slots: torch.Tensor | None) -> Pages:
        """Our page ids of SGLang's slots (its page ``p + 1`` is our page ``p``)."""
        if slots is None or len(slots) == 0:
            return ()
        ps = self.page_size
        pages = slots[::ps] // ps
        if not torch.equal(slots, (pages[:, None] * ps + torch.arange(ps)).view(-1)):
            raise ValueError(f"SGLang returned slots that are not whole pages: {slots.tolist()[:32]}")
        return tuple(p - 1 for p in pages.tolist())


# ---------------------------------------------------------------------- streams
class HiCaller(Caller):
    """``streams.Caller`` over a two-tier cache: an admission that ends in host-only nodes
    loads them back (``LoadBack``, now and then under a memory quota); now and then the
    host pool is flushed (``EvictHost``)."""

    QUOTA = 0.2          # chance that a load back has a memory quota
    HOST_FLUSH = 0.03    # chance of evicting host leaves before an admission

    def admission_match(self, tokens: Tokens) -> tuple[int, Any]:
        ref, found = self.match(tokens)
        if not found.host_len:
            return ref, found
        quota = self.rng.randint(0, 2 * found.host_len) if self.rng.random() < self.QUOTA else None
        loaded, node = self.do(LoadBack(ref, quota))
        return len(self.ops) - 1, HiMatch(found.prefix_len + len(loaded) * self.page_size,
                                          found.pages + loaded, node, 0, node)

    def play(self, request: Request) -> None:
        if self.rng.random() < self.HOST_FLUSH:
            self.do(EvictHost(self.rng.randint(1, 4 * self.side.host_allocator.num_slots // 3)))
        super().play(request)


def record_hi_stream(workload: str, page_size: int, write_policy: str, num_ops: int, eviction: str = "lru",
                     host_ratio: float = 2.0, seed: int = 0) -> list[Op]:
    """At least ``num_ops`` operations of ``workload`` on a two-tier cache, all requests finished."""
    side = OursHiSide(WORKLOADS[workload].capacity_tokens // page_size, page_size, write_policy, eviction,
                      host_ratio)
    return play_requests(HiCaller(side, random.Random(f"{seed}/caller")), workload, num_ops, seed)


def sides(workload: str, page_size: int, write_policy: str, eviction: str = "lru",
          host_ratio: float = 2.0) -> tuple[OursHiSide, SGLangHiSide]:
    """Both caches, fresh, for a replay of ``record_hi_stream(workload, ...)``."""
    num_pages = WORKLOADS[workload].capacity_tokens // page_size
    return (OursHiSide(num_pages, page_size, write_policy, eviction, host_ratio),
            SGLangHiSide(num_pages, page_size, write_policy, eviction, host_ratio))


__all__ = ["EvictHost", "HiCaller", "HiMatched", "HostEvicted", "LoadBack", "Loaded", "OursHiSide",
           "SGLangHiSide", "load_sglang_hicache", "record_hi_stream", "sglang_hicache", "sides"]
