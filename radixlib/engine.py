"""Engine: the router, the scheduler and the executor in one loop.

    generate(prompts) ─► Scheduler.add ─► loop: batch = next_batch()
                                               ├─ prefill: executor.prefill(suffixes) ─► cache_unfinished
                                               └─ decode:  executor.decode(last tokens)
                                               next tokens ─► finished? cache_finished

Which loop: SGLang's non-overlap loop (``Scheduler.event_loop_normal``, what
``--disable-overlap-schedule`` runs): a batch's results reach the tree before the next batch
is chosen. SGLang's default, ``event_loop_overlap``, chooses batch k+1 before it processes
batch k's results; it is not modelled yet.

The engine is control plane only: it imports no torch. The executor (``forward.Executor``)
computes and samples; ``Engine(model)`` builds an ``AttentionExecutor`` for a transformers
model, ``Engine(executor=CostModel())`` replays traces without one.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from .forward import Executor, ForwardRequest
from .pages import PageAllocator, slots_of
from .radix_cache import RadixCache, token_array
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
    error: str | None = None     # why the request was refused or failed (then tokens may be partial)


@dataclass
class EngineStats:
    """Running totals over every ``generate``/``step`` of one engine; ``occupancy`` and
    ``batches`` get one entry per forward that completed (a failed forward adds none)."""
    router: Router = field(repr=False)          # counts evicted tokens
    scheduler: Scheduler = field(repr=False)    # counts retractions
    prompt_tokens: int = 0
    cached_tokens: int = 0
    computed_tokens: int = 0
    forwards: int = 0
    occupancy: list[tuple[int, int, int]] = field(default_factory=list)   # (step, tree pages, request pages)
    batches: list[tuple[str, int]] = field(default_factory=list)          # (kind, requests) of each forward

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

    Threads: ``generate`` holds a lock, so calls from several threads take turns (it is not
    re-entrant: an executor must not call back into it). ``step`` and the scheduler's queue
    are for one thread at a time.
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
        self._lock = threading.Lock()
        self._idle_steps = 0

    def generate(self, prompts: Iterable[str | Sequence[int]], params: SamplingParams | None = None) -> list[Result]:
        """Run every prompt to completion; results in prompt order.

        A bad request is refused alone, before anything of it is queued: its ``Result.error``
        names it and says why, and the other prompts run. Bad: a prompt that is not text or
        non-negative integer ids, an id outside the executor's ``vocab_size``, prompt + new
        tokens beyond its ``max_context`` or the pool. A bad call (``prompts`` one string,
        ``params`` not a ``SamplingParams``) raises ``TypeError`` and changes nothing.
        Whatever interrupts the loop (an exception, KeyboardInterrupt) first aborts every
        queued request, releasing its pages and locks, so a later call starts clean.
        """
        params = _checked_call(prompts, params)
        with self._lock:
            try:
                requests = self._submit(prompts, params)
                while not self.scheduler.idle:
                    self.step()
            except BaseException as e:
                self.scheduler.abort_all(f"{type(e).__name__} interrupted generate")
                raise
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
        self.stats.batches.append((batch.kind, len(batch.items)))
        return batch

    def check_invariants(self) -> None:
        """Pool, tree and requests agree (see ``Router.check_invariants``)."""
        self.router.check_invariants(self.scheduler.live_requests())

    # ------------------------------------------------------------- internals
    def _submit(self, prompts: Iterable, params: SamplingParams) -> list[Request]:
        """A request per prompt; the ones that can run are queued, the others refused."""
        requests = [self._request(p, params) for p in prompts]
        for req in requests:
            if req.error is not None:
                continue
            try:
                self.scheduler.add(req)
            except ValueError as e:                 # can never fit the pool
                req.status, req.error = Status.FAILED, str(e)
        return requests

    def _request(self, prompt, params: SamplingParams) -> Request:
        """A request for ``prompt``; FAILED, with ``error`` saying why, if the executor cannot run it."""
        req = Request(self._next_rid, [], params, arrival=self.executor.clock())
        self._next_rid += 1
        try:
            req.prompt = self._tokens(prompt)
            self._check_context(req)
        except (TypeError, ValueError) as e:
            req.status, req.error = Status.FAILED, f"request {req.rid} refused: {e}"
        return req

    def _tokens(self, prompt: str | Iterable[int]) -> list[int]:
        """The prompt's token ids: non-negative ints inside the executor's vocabulary."""
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise TypeError("a text prompt needs a tokenizer: Engine(model, tokenizer), or pass token ids")
            prompt = self.tokenizer.encode(prompt)
        elif not isinstance(prompt, Iterable):
            raise TypeError(f"a prompt is a string or a list of token ids (generate takes a list of "
                            f"prompts), got {type(prompt).__name__} {prompt!r:.40}")
        tokens = list(prompt)
        if not tokens:
            raise ValueError("empty prompt: a prompt needs at least one token")
        tokens = token_array(tokens).tolist()
        vocab = self.executor.vocab_size
        if vocab is not None and max(tokens) >= vocab:
            raise ValueError(f"token id {max(tokens)} is outside the vocabulary 0..{vocab - 1}")
        return tokens

    def _check_context(self, req: Request) -> None:
        """Prompt + new tokens within the model's positions (SGLang's
        ``TokenizerManager._validate_one_request`` refuses the same, unless auto-truncating)."""
        limit, new = self.executor.max_context, req.params.max_new_tokens
        if limit is not None and len(req.prompt) + new > limit:
            raise ValueError(f"{len(req.prompt)} prompt + {new} new tokens exceed the model's "
                             f"context of {limit} tokens")

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


def _checked_call(prompts, params: SamplingParams | None) -> SamplingParams:
    """``generate``'s arguments as a whole: a collection of prompts, one ``SamplingParams``."""
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Iterable):
        raise TypeError(f"prompts must be a list of prompts (strings or token id lists), got "
                        f"{type(prompts).__name__} {prompts!r:.40}; for one prompt pass [prompt]")
    if params is not None and not isinstance(params, SamplingParams):
        raise TypeError(f"params must be a SamplingParams, got {type(params).__name__}")
    return params or SamplingParams()


def _model_executor(model, num_pages: int, page_size: int, allocator: PageAllocator) -> Executor:
    """An ``AttentionExecutor`` over a pool shaped for ``model`` (imports torch, only here)."""
    if model is None:
        raise ValueError("Engine needs a model, or an executor such as CostModel()")
    from .executor import AttentionExecutor, pool_for
    return AttentionExecutor(model, pool_for(model, num_pages, page_size), allocator)
