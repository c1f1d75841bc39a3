"""Engine: the router, the scheduler and the executor in one loop.

    generate(prompts) ─► Scheduler.add ─► loop: batch = next_batch()
                                               ├─ prefill: executor.prefill(suffixes) ─► cache_unfinished
                                               └─ decode:  executor.decode(last tokens)
                                               next tokens ─► finished? cache_finished

The engine is control plane only: it imports no torch. The executor (``forward.Executor``)
computes and samples; ``Engine(model)`` builds an ``AttentionExecutor`` for a transformers
model, ``Engine(executor=CostModel())`` replays traces without one.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from .forward import Executor, ForwardRequest
from .pages import PageAllocator, slots_of
from .radix_cache import RadixCache
from .request import Request, SamplingParams, Status
from .router import Router
from .scheduler import Batch, Extend, Scheduler


class Result(NamedTuple):
    """One request's outcome."""
    tokens: list[int]            # generated ids (the prompt not included)
    text: str | None             # decoded, when the engine has a tokenizer
    cached_tokens: int           # prompt tokens served from the cache
    computed_tokens: int         # tokens run through the model (retried work included)
    ttft: float | None           # seconds from submission to the first token
    error: str | None = None


@dataclass
class EngineStats:
    router: Router = field(repr=False)          # counts evicted tokens
    scheduler: Scheduler = field(repr=False)    # counts retractions
    prompt_tokens: int = 0
    cached_tokens: int = 0
    computed_tokens: int = 0
    forwards: int = 0
    occupancy: list[tuple[int, int, int]] = field(default_factory=list)   # (step, tree pages, request pages)

    @property
    def evicted_tokens(self) -> int:
        return self.router.evicted_tokens

    @property
    def retractions(self) -> int:
        return self.scheduler.retractions

    @property
    def hit_rate(self) -> float:
        """Share of prompt tokens served from the cache."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


class Engine:
    """Serves prompts from one shared paged pool with a radix prefix cache.

    ``eviction`` orders the cache's victims, ``schedule`` the waiting queue;
    ``enable_cache=False`` turns prefix caching off (every request is a miss, nothing is kept).
    ``executor`` replaces the model (e.g. ``CostModel()`` for model-free trace replays);
    extra keywords go to the ``Scheduler`` (``max_prefill_tokens``, ``chunk_size``, ...).
    """

    def __init__(self, model=None, tokenizer=None, num_pages: int = 1024, page_size: int = 16,
                 eviction: str = "lru", schedule: str = "fcfs", enable_cache: bool = True,
                 executor: Executor | None = None, **scheduler_options):
        self.tokenizer = tokenizer
        self.allocator = PageAllocator(num_pages, page_size)
        self.cache = RadixCache(self.allocator, eviction)
        self.router = Router(self.cache, enable_cache)
        self.scheduler = Scheduler(self.router, schedule, **scheduler_options)
        self.executor = executor or _model_executor(model, num_pages, page_size, self.allocator)
        self.stats = EngineStats(self.router, self.scheduler)
        self._next_rid = 0
        self._idle_steps = 0

    def generate(self, prompts: Sequence[str | Sequence[int]], params: SamplingParams | None = None) -> list[Result]:
        """Run every prompt to completion; results in prompt order."""
        requests = self._submit(prompts, params or SamplingParams())
        while not self.scheduler.idle:
            self.step()
        return [self._result(r) for r in requests]

    def step(self) -> Batch | None:
        """Schedule and run one forward; a failing forward fails its requests, not the engine."""
        batch = self.scheduler.next_batch()
        if batch is None:
            self._check_progress()
            return None
        self._idle_steps = 0
        try:
            next_tokens = self._forward(batch)
        except Exception as e:                      # the executor failed mid-batch
            for item in batch.items:
                self.scheduler.abort(item.req, f"{type(e).__name__}: {e}")
            return batch
        for item, token in zip(batch.items, next_tokens):
            self._advance(item, token, batch.kind)
        self._record_occupancy()
        return batch

    def check_invariants(self) -> None:
        """Pool, tree and requests agree (see ``Router.check_invariants``)."""
        self.router.check_invariants(self.scheduler.live_requests())

    # ------------------------------------------------------------- internals
    def _submit(self, prompts, params: SamplingParams) -> list[Request]:
        requests = [Request(self._next_rid + i, self._tokens(p), params, arrival=self.executor.clock())
                    for i, p in enumerate(prompts)]
        self._next_rid += len(requests)
        for req in requests:
            try:
                self.scheduler.add(req)
            except ValueError as e:                 # can never fit: refuse it, run the rest
                req.status, req.error = Status.FAILED, str(e)
        return requests

    def _tokens(self, prompt: str | Sequence[int]) -> list[int]:
        tokens = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if not tokens:
            raise ValueError("empty prompt")
        return tokens

    def _forward(self, batch: Batch) -> list[int]:
        ps = self.allocator.page_size
        work = [ForwardRequest(i.req.tokens[i.start:i.end], i.start, slots_of(i.req.pages, ps, i.end),
                               i.req.params, i.req.rid) for i in batch.items]
        self.stats.forwards += 1
        run = self.executor.prefill if batch.kind == "prefill" else self.executor.decode
        return run(work)

    def _advance(self, item: Extend, token: int, kind: str) -> None:
        """Book the forward's result for one request: K/V now in the pool, maybe a new token
        (SGLang's ``process_batch_result_prefill`` / ``_decode``)."""
        req = item.req
        req.kv_len = item.end
        req.computed_tokens += item.end - item.start
        self.stats.computed_tokens += item.end - item.start
        if kind == "prefill" and item.end < len(req.tokens):
            return                                  # a chunk: the scheduler caches it next round
        if req.first_token_at is None:
            req.first_token_at = self.executor.clock()
        req.output.append(token)
        if req.finished:
            self.scheduler.finish(req)
            self._count_prompt(req)
        elif kind == "prefill":
            self.router.cache_unfinished(req)

    def _count_prompt(self, req: Request) -> None:
        self.stats.prompt_tokens += len(req.prompt)
        self.stats.cached_tokens += req.cached_tokens

    def _check_progress(self) -> None:
        """With requests left, a step may run nothing once (the scheduler clears finished
        requests from a full batch); twice in a row would be a scheduler bug, not a wait."""
        self._idle_steps = 0 if self.scheduler.idle else self._idle_steps + 1
        if self._idle_steps > 1:
            raise RuntimeError("the scheduler ran nothing twice in a row with requests left")

    def _record_occupancy(self) -> None:
        tree = self.cache.total_size // self.allocator.page_size
        used = self.allocator.num_pages - self.allocator.available
        self.stats.occupancy.append((self.stats.forwards, tree, used - tree))

    def _result(self, req: Request) -> Result:
        text = self.tokenizer.decode(req.output) if self.tokenizer is not None and req.output else None
        ttft = None if req.first_token_at is None else req.first_token_at - req.arrival
        return Result(list(req.output), text, req.cached_tokens, req.computed_tokens, ttft, req.error)


def _model_executor(model, num_pages: int, page_size: int, allocator: PageAllocator) -> Executor:
    """An ``AttentionExecutor`` over a pool shaped for ``model`` (imports torch, only here)."""
    if model is None:
        raise ValueError("Engine needs a model, or an executor such as CostModel()")
    from .executor import AttentionExecutor, pool_for
    return AttentionExecutor(model, pool_for(model, num_pages, page_size), allocator)
