"""Scheduler: which requests run next, and how much of each.

Two queues, as in SGLang's scheduler. Every step is either a prefill (admit waiting
requests, compute their uncached suffixes) or a decode (one token for every running
request); prefill goes first, so new requests join between decode steps::

    waiting ──order (schedule)─► admit while the budget lasts ──► running ──► finished
       ▲                            (match, lock, reserve pages)       │
       └──────────── retract when decode runs out of pages ◄───────────┘

Orders (SGLang's ``schedule_policy.py``): fcfs (arrival), lof (longest output first),
random, lpm (longest cached prefix first; fcfs above 128 waiting), dfs-weight (walk the
tree, heavier subtrees first). The cache-aware two also hold back a request whose
prompt shares >= ``in_batch_threshold`` tokens with an earlier waiting one that is
about to compute them: it waits a round and then hits the cache instead.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple

from .pages import OutOfPages, page_aligned, pages_needed
from .radix_cache import TreeNode, common_prefix_len
from .request import Request, Status, check_int, check_real
from .router import Router

SCHEDULES = ("fcfs", "lpm", "dfs-weight", "lof", "random")
LPM_FALLBACK_QUEUE_LEN = 128


class Extend(NamedTuple):
    """One request's share of a forward: compute ``req.tokens[start:end]``."""
    req: Request
    start: int             # tokens already in the pool (the cached prefix, or earlier chunks)
    end: int


class Batch(NamedTuple):
    kind: str              # "prefill" or "decode"
    items: list[Extend]


@dataclass
class Budget:
    """Tokens a prefill round may still commit (SGLang's ``PrefillAdder`` counters)."""
    total: float           # free + evictable pool tokens, less what running requests will still need
    input: int             # tokens this forward may compute


class Scheduler:
    """Orders the waiting queue by ``schedule`` and builds each step's batch.

    It sees the pool only through the router's narrow view (``peek``, ``free_tokens``,
    ``capacity``) and changes it only through the router's request calls.
    """

    def __init__(self, router: Router, schedule: str = "fcfs", max_prefill_tokens: int = 4096,
                 chunk_size: int | None = None, max_running: int = 64,
                 new_token_ratio: float = 1.0, in_batch_threshold: int = 32, seed: int = 0):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
        check_int("max_running", max_running, 1)
        check_int("in_batch_threshold", in_batch_threshold, 0)
        check_real("new_token_ratio", new_token_ratio, lambda r: 0 < r <= 1, "a number in (0, 1]")
        check_int("max_prefill_tokens", max_prefill_tokens, router.page_size, "at least one page")
        if chunk_size is not None:
            check_int("chunk_size", chunk_size, router.page_size, "at least one page")
        self.router, self.schedule = router, schedule
        self.page_size = router.page_size
        self.max_prefill_tokens, self.chunk_size = max_prefill_tokens, chunk_size
        self.max_running, self.new_token_ratio = max_running, new_token_ratio
        self.in_batch_threshold = in_batch_threshold
        self.rng = random.Random(seed)
        self.waiting: list[Request] = []
        self.running: list[Request] = []
        self.retractions = 0

    # ------------------------------------------------------------------ queue
    def add(self, req: Request) -> None:
        """Queue ``req``; a request that could never fit the pool is refused here.

        It needs pages for its prompt and all its new tokens, plus the one page of
        alignment overhead that admission reserves for every request (``_admit``).
        """
        need = self._paged(len(req.prompt) + req.params.max_new_tokens) + self.page_size
        if need > self.router.capacity:
            raise ValueError(f"request {req.rid} needs {need} token slots for {len(req.prompt)} prompt + "
                             f"{req.params.max_new_tokens} new tokens (+ a page of overhead); "
                             f"the pool has {self.router.capacity}")
        req.status = Status.WAITING
        self.waiting.append(req)

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    def live_requests(self) -> list[Request]:
        """Requests that hold pages or locks right now."""
        return self.running + [r for r in self.waiting if r.node is not None]

    # ------------------------------------------------------------------- step
    def next_batch(self) -> Batch | None:
        """A prefill batch if anything can be admitted, else a decode batch of the running."""
        items = self.schedule_prefill()
        if items:
            return Batch("prefill", items)
        items = self.schedule_decode()
        return Batch("decode", items) if items else None

    def schedule_prefill(self) -> list[Extend]:
        """Admit waiting requests in schedule order while the token budget lasts."""
        budget = Budget(self.router.free_tokens - self._running_reserve(), self.max_prefill_tokens)
        items: list[Extend] = []
        for req in self._ordered_waiting():
            if len(self.running) + len(items) >= self.max_running:
                break
            item = self._admit(req, budget)
            if item is None:
                break
            items.append(item)
            if item.end < len(req.prompt):          # a chunked request ends the round
                break
        for item in items:
            if item.end == len(item.req.prompt):   # a chunked request waits (locked) for its next chunk
                self.waiting.remove(item.req)
                item.req.status = Status.RUNNING
                self.running.append(item.req)
        return items

    def schedule_decode(self) -> list[Extend]:
        """Give every running request a slot for one more token, retracting if pages run out."""
        pending = [r for r in self.running if r.prefilled]
        ready: list[Extend] = []
        while pending:
            req = pending[0]
            try:
                self.router.reserve(req, req.kv_len + 1)
            except OutOfPages:
                victim = self._retract_victim(pending + [e.req for e in ready])
                self.retract(victim)
                pending = [r for r in pending if r is not victim]
                ready = [e for e in ready if e.req is not victim]
                continue
            pending.pop(0)
            ready.append(Extend(req, req.kv_len, req.kv_len + 1))
        return ready

    def retract(self, req: Request) -> None:
        """Take ``req`` off the pool: free its own pages, forget its output, queue it again."""
        self.router.release(req)
        self.running.remove(req)
        req.output.clear()
        req.retractions += 1
        self.retractions += 1
        req.status = Status.WAITING
        self.waiting.append(req)

    def finish(self, req: Request) -> None:
        self.router.cache_finished(req)
        self.running.remove(req)
        req.status = Status.FINISHED

    def abort(self, req: Request, error: str) -> None:
        """Drop ``req`` after a failure: release its pages and locks, mark it failed."""
        if req.node is not None:
            self.router.release(req)
        for queue in (self.running, self.waiting):
            if req in queue:
                queue.remove(req)
        req.status, req.error = Status.FAILED, error

    # -------------------------------------------------------------- admission
    def _admit(self, req: Request, budget: Budget) -> Extend | None:
        """Match and reserve ``req`` if the budget allows; None (and nothing held) if not."""
        fresh = req.node is None                 # a chunked request is already admitted
        if fresh:
            self.router.match(req)
        start = req.kv_len
        end = self._chunk_end(req, start, budget)
        cost = (self._paged(end - start) + self.page_size
                + (req.remaining_new_tokens * self.new_token_ratio if end == len(req.prompt) else 0))
        if end <= start or cost > budget.total:
            return self._give_back(req, fresh)
        try:
            self.router.reserve(req, end)
        except OutOfPages:
            return self._give_back(req, fresh)
        budget.total -= cost
        budget.input -= end - start
        return Extend(req, start, end)

    def _chunk_end(self, req: Request, start: int, budget: Budget) -> int:
        """Where this round's computation of ``req`` stops: its prompt's end, or a chunk boundary."""
        room = budget.input if self.chunk_size is None else min(budget.input, self.chunk_size)
        if len(req.prompt) - start <= room:
            return len(req.prompt)
        return start + page_aligned(room, self.page_size)

    def _give_back(self, req: Request, fresh: bool) -> None:
        if fresh:
            self.router.release(req)             # unlock the match; a chunked request keeps its place
        return None

    def _running_reserve(self) -> float:
        return sum(r.remaining_new_tokens * self.new_token_ratio for r in self.running)

    def _paged(self, n: int) -> int:
        return pages_needed(n, self.page_size) * self.page_size

    # ------------------------------------------------------------------ order
    def _ordered_waiting(self) -> list[Request]:
        """The waiting queue in schedule order, less requests held back for in-batch caching."""
        queue = list(self.waiting)
        chunked = [r for r in queue if r.node is not None]      # an unfinished chunked prefill goes first
        queue = [r for r in queue if r.node is None]
        if self.schedule == "lof":
            queue.sort(key=lambda r: -r.params.max_new_tokens)
        elif self.schedule == "random":
            self.rng.shuffle(queue)
        elif self.schedule in ("lpm", "dfs-weight") and len(queue) <= LPM_FALLBACK_QUEUE_LEN:
            queue = self._cache_aware_order(queue)
        return chunked + queue

    def _cache_aware_order(self, queue: list[Request]) -> list[Request]:
        # a disabled cache never inserts, so its empty tree matches nothing: no special case
        matches = {r.rid: self.router.peek(r.prompt) for r in queue}
        held = self._held_for_in_batch(queue, {rid: m.prefix_len for rid, m in matches.items()})
        queue = [r for r in queue if r.rid not in held]
        if self.schedule == "lpm":
            return sorted(queue, key=lambda r: -matches[r.rid].prefix_len)
        return dfs_weight_order(queue, {rid: m.node for rid, m in matches.items()})

    def _held_for_in_batch(self, queue: list[Request], cached: dict[int, int]) -> set[int]:
        """Requests with a short cache hit that share a long prefix with an earlier waiting one."""
        held, leaders = set(), []
        for r in queue:
            if cached[r.rid] > self.in_batch_threshold:
                continue
            shared = max((common_prefix_len(r.prompt, l.prompt) for l in leaders), default=0)
            if shared >= self.in_batch_threshold:
                held.add(r.rid)
            else:
                leaders.append(r)
        return held

    def _retract_victim(self, candidates: list[Request]) -> Request:
        """SGLang's choice: the fewest output tokens, then the longest prompt."""
        return min(candidates, key=lambda r: (len(r.output), -len(r.prompt)))


def dfs_weight_order(queue: list[Request], nodes: dict[int, TreeNode]) -> list[Request]:
    """Depth-first over the tree, heavier subtrees (more waiting requests) first.

    A request sits at the node its prompt's match ended at (``nodes[rid]``); a node's own
    requests come after its children's (post-order), and equal weights keep the tree's
    child order, as in SGLang. Only the paths from those nodes up to the root carry
    weight, so only they are walked: the rest of the tree adds nothing to the order.
    """
    at_node: dict[TreeNode, list[Request]] = defaultdict(list)
    for r in queue:
        at_node[nodes[r.rid]].append(r)
    weight: dict[TreeNode, int] = defaultdict(int)
    root = None
    for node, requests in at_node.items():
        while node is not None:                   # up to the root, whose parent is None
            weight[node] += len(requests)
            root, node = node, node.parent
    out: list[Request] = []

    def visit(node: TreeNode) -> None:
        weighted = [c for c in node.children.values() if c in weight]
        for child in sorted(weighted, key=lambda c: -weight[c]):
            visit(child)
        out.extend(at_node.get(node, ()))

    if root is not None:
        visit(root)
    return out


def dfs_optimal_hit_rate(prompts: list[list[int]]) -> float:
    """The best hit rate any order can reach (SGLang's Theorem 3.1, page_size 1).

    Every distinct prefix token must be computed once, and with a cache that holds the
    longest request a depth-first order computes each exactly once: hits = total - distinct.
    Assumes no prompt is a prefix of another (the len-1 cap would cost it one token).
    """
    distinct = len({tuple(p[:n]) for p in prompts for n in range(1, len(p) + 1)})
    total = sum(map(len, prompts))
    return (total - distinct) / total
