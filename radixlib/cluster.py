"""Cluster: data-parallel workers behind a router that picks a worker for each request.

A prefix cache lives in one worker's pool. A service runs N workers (data parallelism:
each its own pool, tree and scheduler), and the front end decides where each request
goes. A request sent where its prefix is not cached computes it again::

    arrivals ─► policy.choose(text, loads) ─► worker k: Engine(CostModel), its own RadixCache
                 random | round_robin | power_of_two | cache_aware

The policies are sglang-router 0.3.2's (``python -m sglang_router.launch_router``; the
source is the sgl-model-gateway / smg repository at its 0.3.2 release, ``src/policies/``):

* ``random`` and ``round_robin`` (``random.rs``, ``round_robin.rs``).
* ``power_of_two`` (``power_of_two.rs``): two distinct random workers; the one with fewer
  tokens loaded (what workers report at ``/get_load``), the first on a tie.
* ``cache_aware`` (``cache_aware.rs: CacheAwarePolicy::select_worker``): an approximate
  radix tree over the *text* of the requests each worker was sent (``tree.rs: Tree``),
  not the worker's real cache; then, in order::

      imbalanced?  max - min > balance_abs_threshold  and  max > min * balance_rel_threshold
          yes ─► the least-loaded worker                                  rule "balance"
      match rate = matched characters / characters of the request text
          > cache_threshold ─► the worker the matched tree node is credited to   rule "affinity"
          otherwise         ─► the least-loaded worker                      rule "least_load"
      then insert the text into the tree for the chosen worker

  Load is the router's own count of requests in flight per worker, and "least loaded"
  takes the first of equals in the router's worker order. Every ``eviction_interval_secs``
  the tree forgets, per worker, least recently used leaves until it holds at most
  ``max_tree_size`` characters.

``Cluster`` replays timestamped arrivals in simulated time: every worker is an ``Engine`` on
a ``CostModel`` with its own clock (SGLang's non-overlap loop: see ``engine.py``); before a
request that arrives at ``t`` is routed, every worker runs the forwards that start before
``t``, so the policy sees the loads of time ``t``. Standard library only.
"""
from __future__ import annotations

import heapq
import random
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from .cost_model import CostModel
from .engine import Engine
from .radix_cache import common_prefix_len, token_array
from .replay import hittable_pages, prefix_page_ids
from .request import Request, SamplingParams, Status, check_int, check_real
from .workloads import block_tokens, load_mooncake

IN_FLIGHT = (Status.WAITING, Status.RUNNING)   # sent to a worker, not yet answered

POLICIES = ("random", "round_robin", "power_of_two", "cache_aware")
ROUTER_VERSION = "0.3.2"             # the sglang-router release these policies follow
LOW_MATCH_RULES = ("least_load", "smallest_tree")
BLOCK_TOKENS = 512                   # real tokens per Mooncake hash block


# ------------------------------------------------------------------ the router's inputs
@dataclass(frozen=True)
class CacheAwareConfig:
    """The cache-aware knobs, with the defaults ``launch_router --help`` prints in 0.3.2."""
    cache_threshold: float = 0.3           # route by affinity when the match rate exceeds it
    balance_abs_threshold: int = 64        # imbalanced when max - min load exceeds it ...
    balance_rel_threshold: float = 1.5     # ... and max load exceeds min load times this
    eviction_interval_secs: float = 60.0   # how often the tree forgets
    max_tree_size: int = 2 ** 26           # characters per worker the tree keeps (67,108,864)
    low_match: str = "least_load"          # below it: "least_load" (since 0.2.4); "smallest_tree" (to 0.2.3)

    def __post_init__(self):
        check_real("cache_threshold", self.cache_threshold, lambda x: 0 <= x <= 1, "a number in [0, 1]")
        check_int("balance_abs_threshold", self.balance_abs_threshold, 0)
        check_real("balance_rel_threshold", self.balance_rel_threshold, lambda x: x >= 1, "a number >= 1")
        check_real("eviction_interval_secs", self.eviction_interval_secs, lambda x: x > 0, "a number > 0")
        check_int("max_tree_size", self.max_tree_size, 0)
        if self.low_match not in LOW_MATCH_RULES:
            raise ValueError(f"low_match must be one of {LOW_MATCH_RULES}, got {self.low_match!r}")


class Loads(NamedTuple):
    """What the router knows of each worker's load, in its worker order."""
    requests: list[int]     # requests in flight (the router's own count: cache_aware's load)
    tokens: list[int]       # tokens of those requests (a worker's /get_load: power_of_two's load)


class Decision(NamedTuple):
    worker: int
    rule: str               # which rule chose it ("balance", "affinity", "least_load", or the policy's name)


def routing_text(tokens: Sequence[int]) -> str:
    """The text sglang-router matches for a request given as token ids: the ids in decimal,
    joined by spaces (``GenerateRequest::extract_text_for_routing`` for ``input_ids``)."""
    return " ".join(map(str, tokens))


def least_loaded(loads: Sequence[int]) -> int:
    """The first worker with the smallest load (Rust's ``min_by_key`` keeps the first of equals)."""
    return min(range(len(loads)), key=loads.__getitem__)


# ------------------------------------------------------------------ the approximate tree
class _Node:
    __slots__ = ("text", "children", "tenants", "parent", "owner")

    def __init__(self, text: str, parent: _Node | None, owner: int | None):
        self.text = text                        # characters on the edge into this node
        self.children: dict[str, _Node] = {}    # first character -> child
        self.tenants: dict[int, int] = {}       # worker -> last access epoch (0: passed through)
        self.parent = parent
        self.owner = owner                      # the worker a match ending here is credited to


def _holders(node: _Node) -> str:
    return "{" + ", ".join(f"w{t}{'*' if t == node.owner else ''}" for t in sorted(node.tenants)) + "}"


class TreeMatch(NamedTuple):
    matched: int            # characters of the text found in the tree (any worker's)
    tenant: int | None      # the worker the deepest matched node is credited to


class ApproxTree:
    """sglang-router's approximate tree (``tree.rs: Tree``): one radix tree over characters
    that overlays every worker's, each node remembering which workers were sent text through it.

        root ─ "12 7" ─┬─ "0 3"  {w0}      w0 was sent "12 70 3", w1 "12 75"
           {w0,w1}     └─ "5"    {w1}      a node's owner is the worker that created it

    A match walks characters regardless of worker and credits the deepest node it reaches
    (partly matched or not) to that node's owner; inserting for another worker adds the
    worker to the nodes on the path but does not change their owner. Time is an epoch
    counter: each new leaf, each finished insert and each match takes one tick; a match
    refreshes its node only on every eighth tick (the router samples its updates).
    """

    def __init__(self):
        self.root = _Node("", None, None)
        self.sizes: dict[int, int] = {}         # worker -> characters of the nodes it holds
        self.epoch = 0

    def insert(self, text: str, tenant: int) -> None:
        """Record that ``text`` was sent to worker ``tenant``."""
        self.root.tenants.setdefault(tenant, 0)
        self.sizes.setdefault(tenant, 0)
        node, pos = self.root, 0
        while pos < len(text):
            child = node.children.get(text[pos])
            if child is None:
                self._add_leaf(node, text[pos:], tenant)
                return
            shared = common_prefix_len(text[pos: pos + len(child.text)], child.text)
            if shared < len(child.text):
                child = self._split(child, shared)
            self._join(child, tenant)
            node, pos = child, pos + shared
        node.tenants[tenant] = self._tick()

    def match(self, text: str) -> TreeMatch:
        """The longest prefix of ``text`` in the tree, and the worker it is credited to."""
        node, matched = self.root, 0
        while matched < len(text):
            child = node.children.get(text[matched])
            if child is None:
                break
            shared = common_prefix_len(text[matched: matched + len(child.text)], child.text)
            node, matched = child, matched + shared
            if shared < len(child.text):
                break
        tenant = self._owner(node)
        epoch = self._tick()
        if epoch % 8 == 0 and tenant is not None:
            node.tenants[tenant] = epoch
        return TreeMatch(matched, tenant)

    def evict(self, max_size: int) -> None:
        """Drop least recently used leaves of each worker holding more than ``max_size`` characters.

        A leaf *for a worker* is a node it holds that none of the node's children hold;
        when it goes, its parent may become one (``Tree::evict_tenant_by_size``).
        """
        if all(size <= max_size for size in self.sizes.values()):
            return                                  # nothing to drop (the router scans anyway)
        heap = [(node.tenants[t], i, t, node) for i, (node, t) in enumerate(self._leaves())]
        heapq.heapify(heap)
        count = len(heap)
        while heap:
            _, _, tenant, node = heapq.heappop(heap)
            if self.sizes[tenant] <= max_size or not self._is_leaf_of(node, tenant):
                continue
            parent = self._drop(node, tenant)
            if parent is not None and tenant in parent.tenants and self._is_leaf_of(parent, tenant):
                heapq.heappush(heap, (parent.tenants[tenant], count, tenant, parent))
                count += 1

    def nodes(self) -> list[_Node]:
        """Every node but the root, parents before children."""
        out, stack = [], [self.root]
        while stack:
            node = stack.pop()
            out += node.children.values()
            stack += node.children.values()
        return out

    def __str__(self) -> str:
        """One line per node: its text, the workers holding it (``*`` marks the owner)."""
        return "\n".join(["root " + _holders(self.root), *self._dump(self.root, "")])

    def _dump(self, node: _Node, indent: str) -> list[str]:
        lines, children = [], list(node.children.values())
        for i, child in enumerate(children):
            last = i == len(children) - 1
            lines.append(f"{indent}{'└── ' if last else '├── '}{child.text!r} {_holders(child)}")
            lines += self._dump(child, indent + ("    " if last else "│   "))
        return lines

    def check_invariants(self) -> None:
        """Sizes add up; children sit under their first character; a worker on a node is on its parent."""
        held = Counter()
        for node in self.nodes():
            assert node.text and node.parent.children[node.text[0]] is node, "child under the wrong key"
            assert node.tenants.keys() <= node.parent.tenants.keys(), "a worker holds a node but not its parent"
            for tenant in node.tenants:
                held[tenant] += len(node.text)
        assert all(held[t] == size for t, size in self.sizes.items()), (dict(held), self.sizes)

    # ---------------------------------------------------------------- mechanics
    def _tick(self) -> int:
        self.epoch += 1
        return self.epoch - 1

    def _add_leaf(self, parent: _Node, text: str, tenant: int) -> None:
        leaf = _Node(text, parent, tenant)
        leaf.tenants[tenant] = self._tick()
        self.sizes[tenant] += len(text)
        parent.children[text[0]] = leaf

    def _split(self, child: _Node, n: int) -> _Node:
        """Cut ``child`` after ``n`` characters; the upper part keeps its workers and owner.

        before:  parent ── child[c0 .. cL)
        after:   parent ── upper[c0 .. cn) ── child[cn .. cL)
        """
        upper = _Node(child.text[:n], child.parent, child.owner)
        upper.tenants = dict(child.tenants)
        upper.children[child.text[n]] = child
        child.parent.children[child.text[0]] = upper
        child.text, child.parent = child.text[n:], upper
        return upper

    def _join(self, node: _Node, tenant: int) -> None:
        """``tenant`` passes through ``node``: it holds it from now on (epoch 0 if new)."""
        if tenant not in node.tenants:
            node.tenants[tenant] = 0
            self.sizes[tenant] += len(node.text)

    def _owner(self, node: _Node) -> int | None:
        """The node's owner; if it no longer holds the node, the first worker that does."""
        if node.owner not in node.tenants:
            node.owner = next(iter(node.tenants), None)
        return node.owner

    def _leaves(self) -> list[tuple[_Node, int]]:
        return [(node, t) for node in [self.root, *self.nodes()] for t in node.tenants
                if self._is_leaf_of(node, t)]

    @staticmethod
    def _is_leaf_of(node: _Node, tenant: int) -> bool:
        return tenant in node.tenants and not any(tenant in c.tenants for c in node.children.values())

    def _drop(self, node: _Node, tenant: int) -> _Node | None:
        """Take ``tenant`` off ``node`` (and the node out of the tree if nobody holds it); its parent."""
        del node.tenants[tenant]
        self.sizes[tenant] -= len(node.text)
        if node.parent is not None and not node.children and not node.tenants:
            del node.parent.children[node.text[0]]
        return node.parent


# ------------------------------------------------------------------ the policies
class Policy(Protocol):
    name: str

    def choose(self, text: str, loads: Loads, now: float = 0.0) -> Decision:
        """The worker for a request whose routing text is ``text``, at simulated time ``now``."""


class RandomPolicy:
    name = "random"

    def __init__(self, num_workers: int, seed: int = 0):
        self.num_workers, self.rng = num_workers, random.Random(seed)

    def choose(self, text: str, loads: Loads, now: float = 0.0) -> Decision:
        return Decision(self.rng.randrange(self.num_workers), self.name)


class RoundRobinPolicy:
    name = "round_robin"

    def __init__(self, num_workers: int):
        self.num_workers, self.count = num_workers, 0

    def choose(self, text: str, loads: Loads, now: float = 0.0) -> Decision:
        self.count += 1
        return Decision((self.count - 1) % self.num_workers, self.name)


class PowerOfTwoPolicy:
    """Two distinct workers at random; the one with fewer tokens loaded (the first on a tie)."""
    name = "power_of_two"

    def __init__(self, num_workers: int, seed: int = 0):
        self.num_workers, self.rng = num_workers, random.Random(seed)

    def choose(self, text: str, loads: Loads, now: float = 0.0) -> Decision:
        n = self.num_workers
        if n == 1:
            return Decision(0, self.name)
        first = self.rng.randrange(n)
        second = (first + 1 + self.rng.randrange(n - 1)) % n
        return Decision(first if loads.tokens[first] <= loads.tokens[second] else second, self.name)


class CacheAwarePolicy:
    """sglang-router's cache-aware policy: its approximate tree, its periodic eviction, its rules."""
    name = "cache_aware"

    def __init__(self, num_workers: int, config: CacheAwareConfig = CacheAwareConfig()):
        self.config, self.tree = config, ApproxTree()
        self.next_eviction = config.eviction_interval_secs
        for worker in range(num_workers):       # the router registers every worker with an empty text
            self.tree.insert("", worker)

    def choose(self, text: str, loads: Loads, now: float = 0.0) -> Decision:
        self.evict_until(now)
        # the tree is consulted only when the loads are balanced (a match ticks its clock)
        rate, credited = (0.0, None) if imbalanced(loads.requests, self.config) else self.match_rate(text)
        decision = cache_aware_choice(loads.requests, rate, credited, self.config, self.tree.sizes)
        self.tree.insert(text, decision.worker)
        return decision

    def match_rate(self, text: str) -> tuple[float, int | None]:
        """Matched characters over the text's characters (0 for an empty text, f32), and the credited worker."""
        hit = self.tree.match(text)
        return (f32(f32(hit.matched) / f32(len(text))) if text else 0.0), hit.tenant

    def evict_until(self, now: float) -> None:
        """Run the periodic tree eviction for every interval that has passed by ``now``."""
        while now >= self.next_eviction:
            self.tree.evict(self.config.max_tree_size)
            self.next_eviction += self.config.eviction_interval_secs


def imbalanced(loads: Sequence[int], config: CacheAwareConfig) -> bool:
    """Both balance thresholds exceeded: max - min > abs, and max > min * rel (in f32, as the router)."""
    low, high = min(loads), max(loads)
    return high - low > config.balance_abs_threshold and f32(high) > f32(f32(low) * f32(config.balance_rel_threshold))


def f32(x: float) -> float:
    """``x`` rounded to a 32-bit float: the router computes rates and thresholds in ``f32``."""
    return struct.unpack("f", struct.pack("f", x))[0]


def cache_aware_choice(loads: Sequence[int], match_rate: float, credited: int | None,
                       config: CacheAwareConfig = CacheAwareConfig(),
                       tree_sizes: dict[int, int] | None = None) -> Decision:
    """The cache-aware rules, given the loads and what the tree matched (``cache_aware.rs``)::

        imbalanced(loads)                 -> the least-loaded worker       "balance"
        match_rate > cache_threshold      -> the credited worker           "affinity"
        otherwise                         -> the least-loaded worker       "least_load"
                                             (or the smallest tree, with low_match="smallest_tree")
    """
    if imbalanced(loads, config):
        return Decision(least_loaded(loads), "balance")
    if f32(match_rate) > f32(config.cache_threshold):
        return Decision(credited, "affinity")
    if config.low_match == "smallest_tree":
        return Decision(least_loaded([tree_sizes[w] for w in range(len(loads))]), "smallest_tree")
    return Decision(least_loaded(loads), "least_load")


def make_policy(name: str, num_workers: int, config: CacheAwareConfig = CacheAwareConfig(),
                seed: int = 0) -> Policy:
    """The policy called ``name`` (one of ``POLICIES``) over ``num_workers`` workers."""
    check_int("num_workers", num_workers, 1)
    if name == "random":
        return RandomPolicy(num_workers, seed)
    if name == "round_robin":
        return RoundRobinPolicy(num_workers)
    if name == "power_of_two":
        return PowerOfTwoPolicy(num_workers, seed)
    if name == "cache_aware":
        return CacheAwarePolicy(num_workers, config)
    raise ValueError(f"unknown policy {name!r}; choose one of {POLICIES}")


# ------------------------------------------------------------------ the replay
class Arrival(NamedTuple):
    time: float             # seconds since the trace began
    tokens: list[int]
    max_new_tokens: int


def trace_arrivals(first: int = 0, count: int | None = None, tokens_per_block: int = 16) -> list[Arrival]:
    """The Mooncake trace's requests ``first .. first+count`` as arrivals, the first at time 0.

    Timestamps are the trace's (ms, shifted); each 512-token block becomes ``tokens_per_block``
    tokens, and output lengths are scaled alike (one token stands for 512 / tokens_per_block).
    """
    trace = load_mooncake()[first: None if count is None else first + count]
    scale = BLOCK_TOKENS / tokens_per_block
    start = trace[0].timestamp_ms if trace else 0
    return [Arrival((r.timestamp_ms - start) / 1000, block_tokens(r.hash_ids, tokens_per_block),
                    max(1, round(r.output_length / scale))) for r in trace]


class WorkerRun(NamedTuple):
    """One worker's share of a replay."""
    prompt_tokens: int          # prompt tokens of the requests it served
    hit_rate: float             # the share of them its cache supplied (at admission)
    evicted_tokens: int         # tokens its cache evicted to make room
    peak_pages: int             # the most pages it had in use at once (tree + requests)


class ClusterRun(NamedTuple):
    """What one replay measured."""
    policy: str
    num_workers: int
    hit_rate: float             # cached prompt tokens / prompt tokens, over all workers, at admission
    imbalance: float            # each worker's requests in flight averaged over arrivals; max / mean of those
    ttft: list[float]           # simulated seconds from arrival to first token, per finished request
    decisions: list[Decision]   # the worker each request was sent to, and the rule that chose it
    failed: int                 # requests a worker refused (too long for its pool)
    global_hit_rate: float      # prompt tokens cached on *some* worker at arrival, over prompt tokens
    local_hit_rate: float       # ... cached on the chosen worker at arrival
    per_worker: list[WorkerRun]

    @property
    def workers(self) -> list[int]:
        return [d.worker for d in self.decisions]

    @property
    def rules(self) -> dict[str, int]:
        """How many requests each rule routed."""
        return dict(Counter(d.rule for d in self.decisions))

    @property
    def mean_ttft(self) -> float:
        return sum(self.ttft) / len(self.ttft) if self.ttft else 0.0

    def ttft_quantile(self, q: float) -> float:
        ranked = sorted(self.ttft)
        return ranked[min(len(ranked) - 1, int(q * len(ranked)))] if ranked else 0.0


@dataclass
class Cluster:
    """``num_workers`` engines of ``pages_per_worker`` pages behind one policy.

    ``speed`` divides every cost of the workers' ``CostModel`` (the ideal single worker
    of a cluster of N runs N times faster).
    """
    num_workers: int
    pages_per_worker: int
    policy: str = "cache_aware"
    page_size: int = 16
    config: CacheAwareConfig = CacheAwareConfig()
    seed: int = 0
    speed: float = 1.0
    workers: list[Engine] = field(init=False)
    router: Policy = field(init=False)
    requests: list[Request] = field(init=False, default_factory=list)
    decisions: list[Decision] = field(init=False, default_factory=list)
    samples: list[list[int]] = field(init=False, default_factory=list)          # loads.requests at each arrival
    hits: list[tuple[int, int]] = field(init=False, default_factory=list)      # (chosen worker's, best worker's)

    def __post_init__(self):
        check_real("speed", self.speed, lambda s: s > 0, "a number > 0")
        self.router = make_policy(self.policy, self.num_workers, self.config, self.seed)
        costs = CostModel()
        self.workers = [Engine(executor=CostModel(costs.overhead / self.speed, costs.per_token / self.speed,
                                                  costs.per_context / self.speed),
                               num_pages=self.pages_per_worker, page_size=self.page_size)
                        for _ in range(self.num_workers)]

    def loads(self) -> Loads:
        """Requests in flight per worker (waiting, or running and not yet answered) and their tokens.

        A finished request stays in its worker's running batch until the next decode step
        (as in SGLang), but its answer has gone back: the router no longer counts it.
        """
        queues = [[r for r in w.scheduler.requests() if r.status in IN_FLIGHT] for w in self.workers]
        return Loads([len(q) for q in queues], [sum(len(r.tokens) for r in q) for q in queues])

    def submit(self, arrival: Arrival) -> Decision:
        """Run the workers up to ``arrival.time``, route the request, queue it on its worker.

        A bad arrival (empty or negative token ids, ``max_new_tokens`` < 1, a time before the
        previous arrival's) raises before anything changes. A request the worker can never fit
        is refused alone (``Status.FAILED``), as ``Engine.generate`` refuses it; the router has
        already recorded it, as the real one does.
        """
        req = self._request(arrival)
        self.advance(arrival.time)
        loads = self.loads()
        decision = self.router.choose(routing_text(req.prompt), loads, arrival.time)
        self.hits.append(self._cached_at_arrival(req.prompt, decision.worker))
        try:
            self.workers[decision.worker].scheduler.add(req)
        except ValueError as e:
            req.status, req.error = Status.FAILED, str(e)
        self.samples.append(loads.requests)
        self.requests.append(req)
        self.decisions.append(decision)
        return decision

    def _request(self, arrival: Arrival) -> Request:
        """The request for ``arrival``, checked (``ValueError``/``TypeError``) before it is routed."""
        last = self.requests[-1].arrival if self.requests else float("-inf")
        check_real("arrival time", arrival.time, lambda t: t >= last, f"a number >= the previous arrival's ({last})")
        params = SamplingParams(max_new_tokens=arrival.max_new_tokens)
        return Request(len(self.requests), token_array(arrival.tokens).tolist(), params, arrival=arrival.time)

    def advance(self, until: float) -> None:
        """Every worker runs the forwards that start before ``until``; an idle one waits until then."""
        for worker in self.workers:
            _run(worker, until)
            worker.executor.seconds = max(worker.executor.seconds, until)

    def drain(self) -> None:
        """Run every worker until its queues are empty."""
        for worker in self.workers:
            _run(worker, float("inf"))

    def result(self) -> ClusterRun:
        """The replay's measures (the hit rate over finished requests, as ``EngineStats``)."""
        served = sum(w.stats.prompt_tokens for w in self.workers)
        cached = sum(w.stats.cached_tokens for w in self.workers)
        prompt = sum(len(r.prompt) for r in self.requests)
        return ClusterRun(self.policy, self.num_workers, cached / served if served else 0.0,
                          imbalance(self.samples),
                          [r.first_token_at - r.arrival for r in self.requests if r.first_token_at is not None],
                          list(self.decisions),
                          sum(r.status is Status.FAILED for r in self.requests),
                          sum(best for _, best in self.hits) / prompt if prompt else 0.0,
                          sum(local for local, _ in self.hits) / prompt if prompt else 0.0,
                          [_worker_run(w) for w in self.workers])

    def _cached_at_arrival(self, prompt: list[int], chosen: int) -> tuple[int, int]:
        """Prompt tokens the chosen worker holds, and the most any worker holds (all but the last token)."""
        if len(prompt) < 2:
            return 0, 0
        held = [w.cache.cached_len(prompt[:-1]) for w in self.workers]
        return held[chosen], max(held)


def _worker_run(worker: Engine) -> WorkerRun:
    stats = worker.stats
    peak = max((tree + held for _, tree, held in stats.occupancy), default=0)
    return WorkerRun(stats.prompt_tokens, stats.hit_rate, stats.evicted_tokens, peak)


def _run(worker: Engine, until: float) -> None:
    """Step ``worker`` while it has work and its clock is before ``until``."""
    while not worker.scheduler.idle and worker.executor.clock() < until:
        worker.step()


def imbalance(samples: Sequence[Sequence[int]]) -> float:
    """Max over mean of each worker's average load (1.0: perfectly even, or no load at all)."""
    if not samples:
        return 1.0
    means = [sum(column) / len(samples) for column in zip(*samples)]
    average = sum(means) / len(means)
    return max(means) / average if average else 1.0


def run_cluster(arrivals: Sequence[Arrival], num_workers: int, total_pages: int, policy: str = "cache_aware",
                page_size: int = 16, config: CacheAwareConfig = CacheAwareConfig(), seed: int = 0,
                speed: float = 1.0) -> ClusterRun:
    """Replay ``arrivals`` on ``num_workers`` workers sharing ``total_pages`` pages evenly."""
    cluster = Cluster(num_workers, total_pages // num_workers, policy, page_size, config, seed, speed)
    for arrival in arrivals:
        cluster.submit(arrival)
    cluster.drain()
    return cluster.result()


def run_ideal(arrivals: Sequence[Arrival], num_workers: int, total_pages: int, page_size: int = 16) -> ClusterRun:
    """One worker with the pages and the speed of all ``num_workers``: the bound on hit rate."""
    run = run_cluster(arrivals, 1, total_pages, "round_robin", page_size, speed=num_workers)
    return run._replace(policy="one big worker", num_workers=num_workers)


def expected_random_hit_rate(prompts: Sequence[Sequence[int]], num_workers: int, page_size: int) -> float:
    """The hit rate uniform random routing should reach with unlimited memory, derived, not run.

    A request finds its j-th page on its own worker if any of the ``k`` earlier requests
    that shared its first j pages went there: probability ``1 - (1 - 1/N)**k``. Its expected
    hit is the sum of those over the pages it may match (all but the last token's, as the
    router caps it). Concurrency is ignored: a request is assumed to see every earlier one cached.
    """
    check_int("num_workers", num_workers, 1)
    seen: Counter = Counter()
    stay = 1 - 1 / num_workers
    hits = 0.0
    for tokens, row in zip(prompts, prefix_page_ids(prompts, page_size)):
        usable = hittable_pages(len(tokens), page_size)
        hits += page_size * sum(1 - stay ** seen[page] for page in row[:usable])
        seen.update(row)
    total = sum(map(len, prompts))
    return hits / total if total else 0.0
