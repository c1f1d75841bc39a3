"""A v2-shaped engine: radixlib's control plane with the three shortfalls a review named.

An unpublished review of the project that preceded this book, an earlier Python
RadixAttention ("v2"), praised its control plane and named three places where its execution
fell short of SGLang. This module puts exactly those three back, under the same
``RadixCache``, ``Router`` logic and ``Scheduler``, so every decision (what is cached, what
runs, which pages a request gets) stays radixlib's and only they differ::

    shortfall               the baseline (this module)                   radixlib
    1 prefill               the model runs the whole context from 0;     the uncached suffix only
                            the router's prefix_len is control flow      (executor.AttentionExecutor)
    2 decode K/V            one DynamicCache per request; no pool:       one shared paged KVPool, the
                            the tree's pages hold nothing                pages the tree points into
    3 pages <-> tree        LoosePageManager: a free list that takes     PageAllocator, and
                            back whatever it is given, no owners         check_invariants(held=...)

Shortfall 3 needs a slip to show: a loose page manager is right exactly as long as every
caller keeps the convention. ``LooseRouter`` stops ``Router.cache_finished``'s last free
at the last whole page, so the one free SGLang's ``RadixCache.cache_finished_req`` calls
"free the unaligned tail" never happens: this is our slip, not a quote of v2. Chapter 08
counts what the loose manager lets through, and what radixlib's checks do with the same slip.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import torch
from transformers import DynamicCache, PreTrainedModel

from .engine import Engine, EngineStats
from .executor import max_context
from .forward import ForwardRequest
from .pages import OutOfPages, page_aligned
from .radix_cache import RadixCache
from .request import Request
from .router import Router
from .sampling import sample
from .scheduler import Batch, Extend, Scheduler


class LoosePageManager:
    """A page manager of v2's kind: a free list of page ids and nothing else.

    It hands out ids from a stack of free ones and takes back whatever it is given. It
    records no owner, so it cannot tell a page a request holds from one a tree node holds,
    a page freed twice from one freed once, or a page that nobody will ever free::

        free stack: [9 8 7 ... 0]    alloc pops from the end (lowest first), free pushes, no questions

    It answers what ``RadixCache`` and ``Router`` ask of an allocator (``alloc``, ``free``,
    ``adopt``, ``reclaim``), so they run over it unchanged; ``PageAllocator`` answers the same
    calls and records, for every page, whether it is free, a caller's or the tree's.
    """

    def __init__(self, num_pages: int, page_size: int = 1):
        self.num_pages, self.page_size = num_pages, page_size
        self._free = list(range(num_pages - 1, -1, -1))

    @property
    def available(self) -> int:
        """Entries in the free list (a page freed twice counts twice)."""
        return len(self._free)

    @property
    def num_slots(self) -> int:
        return self.num_pages * self.page_size

    def alloc(self, n: int) -> list[int]:
        if n > len(self._free):
            raise OutOfPages(f"asked for {n} pages, only {len(self._free)} are free")
        pages = self._free[len(self._free) - n:][::-1]
        del self._free[len(self._free) - n:]
        return pages

    def free(self, pages: Iterable[int]) -> None:
        """Push ``pages`` back, whatever they are: free already, the tree's, repeated."""
        self._free += list(pages)[::-1]

    def adopt(self, pages: list[int]) -> list[int]:
        """The tree takes ``pages`` (``RadixCache.insert``): nothing to record, nothing checked."""
        return pages

    def reclaim(self, pages: list[int]) -> None:
        """The tree gives back an evicted node's pages (``RadixCache.evict``)."""
        self.free(pages)

    def free_list(self) -> list[int]:
        """The free list as it stands (a page may appear twice), for audits."""
        return list(self._free)


class LooseRouter(Router):
    """``Router`` with one free cut short: a finished request's partial last page stays out.

    Page size 1 has no partial page, so nothing leaks; at page size 16 every request whose
    K/V do not end on a page boundary leaves one page that no node and no request owns.
    """

    def cache_finished(self, req: Request) -> None:
        """``Router.cache_finished`` with its free stopped at ``kv_len // page_size``."""
        aligned = page_aligned(req.kv_len, self.page_size) if self.enable_cache else 0
        if aligned:
            self._insert(req, aligned)
        self.allocator.free(req.pages[max(aligned, req.prefix_len) // self.page_size: req.kv_len // self.page_size])
        self._detach(req)


class FullForwardExecutor:
    """Shortfalls 1 and 2: the model runs on every token it is handed, and decode reads a
    ``DynamicCache`` per request. No pool, no slots: the pages the router hands out hold nothing.

    ``prefill``: requests whose ``tokens`` are the whole context (``start`` 0), one forward
    each into a new ``DynamicCache``. ``decode``: one forward per request over its own cache.
    Takes the model over (eval mode, SDPA attention), as ``AttentionExecutor`` does.
    """

    def __init__(self, model: PreTrainedModel):
        model.set_attn_implementation("sdpa")
        self.model = model.eval()
        self.vocab_size, self.max_context = model.config.vocab_size, max_context(model.config)
        self.caches: dict[int, DynamicCache] = {}          # request id -> its K/V

    clock = staticmethod(time.perf_counter)

    def prefill(self, batch: Sequence[ForwardRequest]) -> list[int]:
        return [self._forward(r, DynamicCache(config=self.model.config)) for r in batch]

    def decode(self, batch: Sequence[ForwardRequest]) -> list[int]:
        """The scheduler decodes every running request each step, so a cache of a request
        not in ``batch`` (finished, retracted or failed) is dropped first."""
        live = {r.rid for r in batch}
        self.caches = {rid: cache for rid, cache in self.caches.items() if rid in live}
        return [self._forward(r, self.caches[r.rid]) for r in batch]

    @property
    def kv_bytes(self) -> int:
        """Bytes of K and V held in all the caches: a prefix shared by N requests, N times."""
        return sum(layer.keys.nbytes + layer.values.nbytes
                   for cache in self.caches.values() for layer in cache.layers if layer.keys is not None)

    @torch.inference_mode()
    def _forward(self, request: ForwardRequest, cache: DynamicCache) -> int:
        """Run ``request.tokens`` at positions ``start ..`` over ``cache``; the next token."""
        if cache.get_seq_length() != request.start:
            raise ValueError(f"request {request.rid}: its cache holds {cache.get_seq_length()} tokens, "
                             f"but the forward starts at position {request.start}")
        device, end = self.model.device, request.start + len(request.tokens)
        out = self.model(input_ids=torch.tensor([list(request.tokens)], device=device),
                         position_ids=torch.arange(request.start, end, device=device)[None],
                         cache=cache, use_cache=True, logits_to_keep=1)
        self.caches[request.rid] = cache
        return sample(out.logits[0, -1], request.params, request.rid, end)


class BaselineEngine(Engine):
    """``Engine`` with the three shortfalls: the same decisions, scheduler and sampling.

    ``executor`` replaces the ``FullForwardExecutor`` (e.g. ``CostModel()``, to replay
    traffic through the loose page manager without a model).
    """

    def __init__(self, model: PreTrainedModel | None = None, tokenizer=None, num_pages: int = 1024,
                 page_size: int = 16, eviction: str = "lru", schedule: str = "fcfs", enable_cache: bool = True,
                 executor=None, **scheduler_options):
        if model is None and executor is None:
            raise ValueError("BaselineEngine needs a model, or an executor such as CostModel()")
        super().__init__(tokenizer=tokenizer, num_pages=num_pages, page_size=page_size, eviction=eviction,
                         schedule=schedule, enable_cache=enable_cache,
                         executor=executor or FullForwardExecutor(model), **scheduler_options)
        # shortfall 3: the same cache, router and scheduler, rebuilt over the loose page manager
        self.allocator = LoosePageManager(num_pages, page_size)
        self.cache = RadixCache(self.allocator, eviction)
        self.router = LooseRouter(self.cache, enable_cache)
        self.scheduler = Scheduler(self.router, schedule, **scheduler_options)
        self.stats = EngineStats(self.router, self.scheduler)

    def _forward(self, batch: Batch) -> list[int]:
        """Shortfall 1: a prefill hands the model the whole context from position 0. The prefix
        the router matched is skipped in the control flow only: ``stats`` and ``Result`` count
        it as cached, as radixlib's engine does, and the model computes it anyway."""
        if batch.kind == "prefill":
            batch = Batch("prefill", [Extend(item.req, 0, item.end) for item in batch.items])
        return super()._forward(batch)
