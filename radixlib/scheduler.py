"""Scheduler: which requests run next, and how much of each.

SGLang's scheduler (``managers/scheduler.py``), its policy (``schedule_policy.py``) and
its batch (``schedule_batch.py``), decision for decision. Every step is a prefill
(admit waiting requests, compute their uncached suffixes) if anything can be admitted,
otherwise a decode (one token for every running request)::

    waiting ──order (schedule)─► admit while the budget lasts ──► running ──► finished
       ▲                         (lookup, lock, reserve pages)        │
       └──────────── retract when decode runs out of pages ◄──────────┘

Orders (``SchedulePolicy.calc_priority``, sorting the waiting queue in place, so each
round starts from the last round's order): fcfs (arrival), lof (longest output first),
random, lpm (longest cached prefix first; no sorting at all above 128 waiting) and
dfs-weight (walk the tree, heavier subtrees first). lpm also sorts last, within the
same round, a request with a short cache hit whose tokens share >= ``in_batch_threshold``
tokens with an earlier waiting request (in-batch prefix caching): if the budget runs
out first, it waits, and later hits the earlier one's cached prefix.

The admission budget is ``PrefillAdder``'s (``Budget``); a request too long for the
chunk budget is computed in chunks, one round each (``chunked``); a decode that would
run out of pages retracts requests (``ScheduleBatch.retract_decode``), which keep
their output and queue again. ``new_token_ratio``, the share of its remaining output a
running request is expected to still produce, decays by one step per decode and is
re-estimated after a retraction.
"""
from __future__ import annotations

import bisect
import enum
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple

from .pages import page_aligned, page_rounded_up
from .radix_cache import TreeNode, common_prefix_len
from .request import Request, Status, check_int, check_real
from .router import Admission, Router

SCHEDULES = ("fcfs", "lpm", "dfs-weight", "lof", "random")
LPM_FCFS_ABOVE = 128              # SGLang: SchedulePolicy._determine_active_policy (lpm only)
CLIP_MAX_NEW_TOKENS = 4096        # SGLang: schedule_policy.CLIP_MAX_NEW_TOKENS
INIT_NEW_TOKEN_RATIO = 0.7        # SGLang: envs.SGLANG_INIT_NEW_TOKEN_RATIO
RETRACT_DECODE_STEPS = 20         # SGLang: envs.SGLANG_RETRACT_DECODE_STEPS
MIN_NEW_TOKEN_RATIO_FACTOR = 0.14  # SGLang: envs.SGLANG_MIN_NEW_TOKEN_RATIO_FACTOR
NEW_TOKEN_RATIO_DECAY_STEPS = 600  # SGLang: envs.SGLANG_NEW_TOKEN_RATIO_DECAY_STEPS


class Extend(NamedTuple):
    """One request's share of a forward: compute ``req.tokens[start:end]``."""
    req: Request
    start: int             # tokens already in the pool (the cached prefix, or earlier chunks)
    end: int


class Batch(NamedTuple):
    kind: str              # "prefill" or "decode"
    items: list[Extend]


class Added(enum.Enum):
    """What an admission attempt leaves the round to do (SGLang's ``AddReqResult``)."""
    CONTINUE = "continue"  # try the next waiting request
    NO_TOKEN = "no token"  # out of pool tokens: stop, and mark the batch full
    OTHER = "other"        # out of prefill or chunk budget: stop


@dataclass
class Budget:
    """One prefill round's counters (SGLang's ``PrefillAdder``). With ``free`` the pool's
    free + evictable tokens at the moment of asking::

        free - total_offset    room for inputs and for the outputs still to come
        free - cur_offset      room for this forward's inputs
    """
    total_offset: float    # running requests' expected outputs, then each admission's cost
    cur_offset: int
    input: int             # tokens this forward may still compute (max_prefill_tokens)
    chunk: int | None      # tokens before a request is cut into chunks (chunk_size); None: never

    def charge(self, extend: int, max_new: int, page_size: int) -> None:
        """Book an admission: its input (in whole pages), its outputs, a page of slack."""
        extend = page_rounded_up(extend, page_size)
        self.total_offset += extend + max_new + page_size
        self.cur_offset += extend + page_size
        self.input -= extend
        if self.chunk is not None:
            self.chunk -= extend


class Scheduler:
    """Orders the waiting queue by ``schedule`` and builds each step's batch.

    Names map to SGLang's server arguments: ``max_prefill_tokens``, ``chunk_size`` =
    ``chunked_prefill_size``, ``max_running`` = ``max_running_requests``,
    ``new_token_ratio`` = the initial ratio (``SGLANG_INIT_NEW_TOKEN_RATIO``), which
    decays to ``min_new_token_ratio`` over ``new_token_ratio_decay_steps`` decode steps;
    ``in_batch_threshold`` = both ``IN_BATCH_PREFIX_CACHING_*_THRESHOLD``s. It sees the
    pool only through the router's narrow view and changes it only through the
    router's request calls.
    """

    def __init__(self, router: Router, schedule: str = "fcfs", max_prefill_tokens: int = 16384,
                 chunk_size: int | None = None, max_running: int = 64, new_token_ratio: float = INIT_NEW_TOKEN_RATIO,
                 min_new_token_ratio: float | None = None,
                 new_token_ratio_decay_steps: int = NEW_TOKEN_RATIO_DECAY_STEPS,
                 in_batch_threshold: int = 32, seed: int = 0):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
        check_int("max_running", max_running, 1)
        check_int("in_batch_threshold", in_batch_threshold, 0)
        check_int("new_token_ratio_decay_steps", new_token_ratio_decay_steps, 1)
        check_real("new_token_ratio", new_token_ratio, lambda r: 0 < r <= 1, "a number in (0, 1]")
        if min_new_token_ratio is not None:
            check_real("min_new_token_ratio", min_new_token_ratio, lambda r: 0 <= r <= new_token_ratio,
                       f"a number in [0, new_token_ratio={new_token_ratio}]")
        check_int("max_prefill_tokens", max_prefill_tokens, router.page_size, "at least one page")
        if chunk_size is not None:
            check_int("chunk_size", chunk_size, router.page_size, "at least one page")
        self.router, self.schedule = router, schedule
        self.page_size = router.page_size
        self.max_prefill_tokens, self.chunk_size, self.max_running = max_prefill_tokens, chunk_size, max_running
        self.init_new_token_ratio = self.new_token_ratio = new_token_ratio
        self.min_new_token_ratio = (min(new_token_ratio * MIN_NEW_TOKEN_RATIO_FACTOR, 1.0)
                                    if min_new_token_ratio is None else min_new_token_ratio)
        self.new_token_ratio_decay = (new_token_ratio - self.min_new_token_ratio) / new_token_ratio_decay_steps
        self.in_batch_threshold = in_batch_threshold
        self.rng = random.Random(seed)
        self.waiting: list[Request] = []
        self.running: list[Request] = []     # SGLang's running batch: finished requests stay until a decode
        self.chunked: Request | None = None  # the request being prefilled in chunks
        self.batch_is_full = False           # no admissions until a running request leaves
        self.retractions = 0
        self._prefilled: list[Request] = []  # the last prefill batch, merged into running next step

    def __repr__(self) -> str:
        running = [(r.rid, len(r.output), r.remaining_new_tokens) for r in self.running]
        return (f"Scheduler({self.schedule}, free_tokens={self.router.free_tokens}, "
                f"new_token_ratio={self.new_token_ratio:.3g}, running (rid, outputs, remaining)={running}, "
                f"waiting={[r.rid for r in self.waiting]})")

    # ------------------------------------------------------------------ queue
    def add(self, req: Request) -> None:
        """Queue ``req``; a request that could never be admitted is refused here.

        An empty pool admits a request when its input (in whole pages), its outputs and
        a page of slack are fewer tokens than the pool holds (``PrefillAdder``). SGLang
        clips such a request's ``max_new_tokens`` (``init_req_max_new_tokens``); we refuse it.
        """
        paged = page_rounded_up(len(req.prompt), self.page_size)
        if paged + req.params.max_new_tokens + self.page_size >= self.router.capacity:
            raise ValueError(f"request {req.rid} can never be admitted: its {len(req.prompt)}-token prompt "
                             f"({paged} slots in whole pages) + {req.params.max_new_tokens} new tokens + a "
                             f"page of slack must be fewer than the pool's {self.router.capacity} slots")
        req.status = Status.WAITING
        self.waiting.append(req)

    @property
    def idle(self) -> bool:
        """Nothing waits or runs. Finished requests may still sit in the running batch:
        the next ``next_batch`` clears them, as SGLang's next loop iteration does."""
        unfinished = any(r.status is Status.RUNNING for r in self.running + self._prefilled)
        return not (self.waiting or self.chunked or unfinished)

    def requests(self) -> list[Request]:
        """Every request the scheduler has: waiting, being chunked, just prefilled, running."""
        pending = self.waiting + ([self.chunked] if self.chunked else []) + self._prefilled + self.running
        return list({id(r): r for r in pending}.values())

    def live_requests(self) -> list[Request]:
        """Requests that hold pages or locks right now."""
        held = self.running + self._prefilled + ([self.chunked] if self.chunked else [])
        return list({id(r): r for r in held if r.node is not None}.values())

    # ------------------------------------------------------------------- step
    def next_batch(self) -> Batch | None:
        """A prefill batch if anything can be admitted, else a decode batch of the running.

        SGLang's ``get_next_batch_to_run``; a call that runs nothing clears the finished
        requests, and if nothing waits either, resets ``new_token_ratio`` (``on_idle``).
        """
        self._merge_prefilled()
        items = self.schedule_prefill()
        if items:
            return Batch("prefill", items)
        items = self.schedule_decode()
        if items:
            return Batch("decode", items)
        if self.idle:
            self.new_token_ratio = self.init_new_token_ratio
        return None

    def schedule_prefill(self) -> list[Extend]:
        """Admit waiting requests in schedule order while the budget lasts (``get_new_batch_prefill``)."""
        if (self.batch_is_full or not self.waiting) and self.chunked is None:
            return []
        allocatable = self._allocatable()
        if allocatable <= 0 and self.chunked is None:
            self.batch_is_full = True
            return []
        self._order_waiting()
        budget = self._budget()
        items = [self._continue_chunk(budget)] if self.chunked is not None else []
        for req in self.waiting:
            if len(items) >= allocatable:
                self.batch_is_full = True
            if self.batch_is_full:
                break
            added = self._add_one(req, budget, items)
            if added is not Added.CONTINUE:
                self.batch_is_full |= added is Added.NO_TOKEN
                break
        if items:
            self._reserve_prefill(items)
        return items

    def schedule_decode(self) -> list[Extend]:
        """One more token for every running request, retracting if pages run out (``update_running_batch``)."""
        before = len(self.running)
        self.running = [r for r in self.running if r.status is Status.RUNNING]
        if self.running and self._decode_fits(self.running):
            self.new_token_ratio = max(self.new_token_ratio - self.new_token_ratio_decay, self.min_new_token_ratio)
        elif self.running:
            self._retract_decode()
        if len(self.running) < before:
            self.batch_is_full = False
        self.router.evict_for(len(self.running) * self.page_size)   # prepare_for_decode's allocation
        for req in self.running:
            self.router.reserve(req, req.kv_len + 1)
        return [Extend(r, r.kv_len, r.kv_len + 1) for r in self.running]

    def finish(self, req: Request) -> None:
        """Cache a finished request; it leaves the running batch at the next decode."""
        self.router.cache_finished(req)
        req.status = Status.FINISHED

    def abort_all(self, error: str) -> None:
        """Fail every request not yet finished (waiting, chunked, prefilled, running),
        releasing its pages and locks: what an interrupted engine leaves is cleaned up."""
        for req in self.requests():
            if req.status is not Status.FINISHED:
                self.abort(req, error)
        self.running = []

    def abort(self, req: Request, error: str) -> None:
        """Drop ``req`` after a failure: release its pages and locks, mark it failed."""
        if req.node is not None:
            self.router.release(req)
        for queue in (self.running, self.waiting, self._prefilled):
            if req in queue:
                queue.remove(req)
        if self.chunked is req:
            self.chunked = None
        self.batch_is_full = False               # a request left: there may be room again
        req.status, req.error = Status.FAILED, error

    # -------------------------------------------------------------- admission
    def _merge_prefilled(self) -> None:
        """Cache the chunked request's last chunk (``stash_chunked_request``); the last prefill
        batch joins the running batch, less finished and chunked requests."""
        if self.chunked is not None:
            self.router.cache_unfinished(self.chunked)
        batch, self._prefilled = self._prefilled, []
        staying = [r for r in batch if r.status is Status.RUNNING and r is not self.chunked]
        if len(staying) < len(batch) or (staying and not self.running):
            self.batch_is_full = False           # a smaller batch, or a new running batch
        self.running += staying

    def _allocatable(self) -> int:
        """Requests a round may add: below ``max_running`` both for the running batch
        (finished requests included) and for request slots (held by live requests and a
        chunked one; SGLang's ``get_num_allocatable_reqs``)."""
        live = sum(r.status is Status.RUNNING for r in self.running) + (self.chunked is not None)
        return self.max_running - max(len(self.running), live)

    def _budget(self) -> Budget:
        expected = sum([min(r.remaining_new_tokens, CLIP_MAX_NEW_TOKENS) * self.new_token_ratio
                        for r in self.running])
        return Budget(expected, 0, self.max_prefill_tokens, self.chunk_size)

    def _room(self, budget: Budget, pinned: int = 0) -> float:
        """Tokens left for inputs and outputs, with ``pinned`` more tokens locked."""
        return (self.router.free_tokens - pinned) - budget.total_offset

    def _state(self, budget: Budget) -> Added:
        """Whether the round goes on (``PrefillAdder.budget_state``)."""
        if self._room(budget) <= 0 or self.router.free_tokens - budget.cur_offset <= 0:
            return Added.NO_TOKEN
        if budget.input <= 0 or (budget.chunk is not None and budget.chunk <= 0):
            return Added.OTHER
        return Added.CONTINUE

    def _add_one(self, req: Request, budget: Budget, items: list[Extend]) -> Added:
        """Look ``req`` up and admit it, whole or its first chunk, if the budget allows
        (``init_next_round_input``, then ``PrefillAdder.add_one_req``)."""
        found = self.router.lookup(req)
        extend = len(req.tokens) - found.prefix_len
        cost = extend + min(max(req.remaining_new_tokens, 0), CLIP_MAX_NEW_TOKENS) + self.page_size
        paged = page_rounded_up(extend, self.page_size)
        if cost >= self._room(budget):
            return Added.NO_TOKEN
        if paged >= budget.input and items:
            return Added.OTHER
        if cost >= self._room(budget, pinned=self.router.unlocked_tokens(found.node)):
            return Added.NO_TOKEN                # not once its prefix is locked
        if budget.chunk is None or paged <= budget.chunk:
            return self._admit(req, found, len(req.tokens), budget, items)
        chunk = page_aligned(budget.chunk, self.page_size)       # the prefix is whole pages already
        if chunk <= 0:
            return Added.OTHER
        self.chunked = req
        return self._admit(req, found, found.prefix_len + chunk, budget, items)

    def _admit(self, req: Request, found: Admission, end: int, budget: Budget, items: list[Extend]) -> Added:
        self.router.admit(req, found)
        items.append(self._charge(budget, Extend(req, found.prefix_len, end)))
        return self._state(budget)

    def _continue_chunk(self, budget: Budget) -> Extend:
        """The chunked request's next chunk, whatever the budget (``add_chunked_req``)."""
        req = self.chunked
        room = min(budget.chunk, int(self._room(budget)))
        room = room if room > 0 else budget.chunk
        item = self._charge(budget, Extend(req, req.kv_len, min(len(req.tokens), req.kv_len + room)))
        if item.end == len(req.tokens):
            self.chunked = None
        return item

    def _charge(self, budget: Budget, item: Extend) -> Extend:
        """Book ``item`` in the budget: its outputs too if it ends the request's prefill."""
        whole = item.end == len(item.req.tokens)
        max_new = min(item.req.params.max_new_tokens, CLIP_MAX_NEW_TOKENS) if whole else 0
        budget.charge(item.end - item.start, max_new, self.page_size)
        return item

    def _reserve_prefill(self, items: list[Extend]) -> None:
        """Take the admitted requests off the queue and give them their pages, evicting
        once for the whole batch (``prepare_for_extend``'s allocation)."""
        admitted = {id(item.req) for item in items}
        self.waiting = [r for r in self.waiting if id(r) not in admitted]
        self._prefilled = [item.req for item in items]      # tracked before anything can fail
        slack = len(items) * self.page_size if self.page_size > 1 else 0
        self.router.evict_for(sum(item.end - item.start for item in items) + slack)
        for item in items:
            self.router.reserve(item.req, item.end)
            item.req.status = Status.RUNNING

    # ------------------------------------------------------------- retraction
    def _decode_fits(self, reqs: list[Request]) -> bool:
        """Evict for the pages a decode step needs, and say whether they are free (``check_decode_mem``)."""
        need = self.page_size * sum(r.kv_len % self.page_size == 0 for r in reqs)
        self.router.evict_for(need)
        return self.router.available_tokens >= need

    def _retract_decode(self) -> None:
        """Retract running requests until a decode step fits (``ScheduleBatch.retract_decode``).

        The victims: fewest output tokens first, then the longest prompt; at least one
        goes, and one always stays (and fails if even it does not fit). The survivors
        keep that order.
        """
        keep = retraction_order(self.running)[::-1]          # victims are popped from the end
        retracted = []
        while not retracted or not self._decode_fits(keep):
            if len(keep) == 1:
                break
            retracted.append(keep.pop())
            self._retract(retracted[-1], len(keep))
        if len(keep) <= 1 and not self._decode_fits(keep):
            self.abort(keep.pop(), "out of memory even after retracting every other running request")
        self.running = keep
        decoded = sum(len(r.output) for r in keep) + RETRACT_DECODE_STEPS * len(keep)
        self.new_token_ratio = min(1.0, decoded / (sum(r.params.max_new_tokens for r in keep) + 1))
        self.waiting += retracted

    def _retract(self, req: Request, remaining: int) -> None:
        """Free ``req``'s own pages (inserting nothing), evict for the ``remaining``
        requests' next steps; ``req`` keeps its output and waits again (``release_req``)."""
        self.router.release(req)
        self.router.evict_for(remaining * RETRACT_DECODE_STEPS)
        req.retractions += 1
        self.retractions += 1
        req.status = Status.WAITING

    # ------------------------------------------------------------------ order
    def _order_waiting(self) -> None:
        """Sort the waiting queue in place by ``schedule`` (``SchedulePolicy.calc_priority``)."""
        cache_aware = self.schedule in ("lpm", "dfs-weight") and self.router.enable_cache
        if self.schedule == "lof":
            self.waiting.sort(key=lambda r: -r.params.max_new_tokens)
        elif self.schedule == "random":
            self.rng.shuffle(self.waiting)
        elif cache_aware and not (self.schedule == "lpm" and len(self.waiting) > LPM_FCFS_ABOVE):
            self._cache_aware_order()

    def _cache_aware_order(self) -> None:
        matches = {id(r): self.router.peek(r.tokens) for r in self.waiting}
        if self.schedule == "dfs-weight":
            self.waiting = dfs_weight_order(self.waiting, {key: m.node for key, m in matches.items()})
            return
        prefix_lens = {key: m.prefix_len for key, m in matches.items()}
        last = self._in_batch_deprioritized([(r, prefix_lens[id(r)]) for r in self.waiting])
        self.waiting = lpm_order(self.waiting, prefix_lens, last)

    def _in_batch_deprioritized(self, queue: list[tuple[Request, int]]) -> set[int]:
        """Requests with a short cache hit sharing >= ``in_batch_threshold`` tokens with an
        earlier such request (SGLang's ``_compute_prefix_matches``, which matches each in a
        tree of the earlier ones; the longest shared prefix with a set of sequences is
        found at a neighbour in sorted order)."""
        deprioritized, earlier = set(), []
        for req, cached in queue:
            if cached > self.in_batch_threshold:
                continue
            key = tuple(req.tokens)
            i = bisect.bisect(earlier, key)
            shared = max([common_prefix_len(key, earlier[j]) for j in (i - 1, i) if 0 <= j < len(earlier)], default=0)
            if shared >= self.in_batch_threshold:
                deprioritized.add(id(req))
            else:
                earlier.insert(i, key)
        return deprioritized


def lpm_order(queue: list[Request], prefix_lens: dict[int, int], last: set[int]) -> list[Request]:
    """Longest cached prefix first (``prefix_lens[id(req)]``, a stable sort), the requests in
    ``last`` (deprioritized by in-batch prefix caching) after all others (SGLang's
    ``_sort_by_longest_prefix``)."""
    return sorted(queue, key=lambda r: float("inf") if id(r) in last else -prefix_lens[id(r)])


def retraction_order(running: list[Request]) -> list[Request]:
    """The running batch, first victim first: fewest output tokens, then the longest
    prompt, then the later in the batch (SGLang's ``retract_decode`` sorts the batch by
    ``(len(output_ids), -len(origin_input_ids))``, descending, and pops from its end)."""
    return sorted(running, key=lambda r: (len(r.output), -len(r.prompt)), reverse=True)[::-1]


def dfs_weight_order(queue: list[Request], nodes: dict[int, TreeNode]) -> list[Request]:
    """Depth-first over the tree, heavier subtrees (more waiting requests) first.

    A request sits at the node its uncapped match ended at (``nodes[id(req)]``); a node's
    own requests come after its children's (post-order), and equal weights keep the
    tree's child order, as in SGLang's ``_sort_by_dfs_weight``. Only the paths from those
    nodes up to the root carry weight, so only they are walked: the rest of the tree
    adds nothing to the order.
    """
    at_node: dict[TreeNode, list[Request]] = defaultdict(list)
    for r in queue:
        at_node[nodes[id(r)]].append(r)
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
