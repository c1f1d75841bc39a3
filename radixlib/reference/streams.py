"""Seeded operation streams, played against our cache the way a serving engine plays them.

A workload is an endless, seeded sequence of requests. A ``Caller`` turns each request
into cache operations, deciding from our cache's answers (so pages, present lengths
and shortfalls are real), and records them as a stream that replays on both sides:

    admit    Match(prompt minus its last token), Lock it, Alloc pages for the rest,
             first Evict-ing the shortfall (and finishing older requests if that is
             not enough); sometimes cache the prompt mid-flight (Insert, Free the
             duplicates, Match again, Lock the new node, Unlock the old one)
    finish   Insert(prompt + output), Free the duplicate pages the tree already had
             and the unaligned tail page, Unlock
    probe    an unlocked Match of a prefix cut at a random point (a scheduler
             ranking its queue): the lookups that end inside a node and split it
    flush    now and then, Evict the whole pool: more than is unlocked

Workloads: ``random`` (tree-shaped prompts: shared system prompts, few-shot examples,
multi-turn continuation, branching, exact repeats), ``mooncake`` (the Mooncake
synthetic trace, 16 tokens per 512-token block) and ``chat`` (multi-turn chats whose
prompts grow past 8,000 tokens: long keys, long matches, long inserts).
"""
from __future__ import annotations

import functools
import itertools
import random
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from radixlib.pages import pages_needed
from radixlib.radix_cache import MatchResult
from radixlib.workloads import mooncake_prompts

from .ops import CACHE_OPS, Alloc, Evict, Free, Insert, Lock, Match, Op, Tokens, Unlock
from .sides import OursSide


class Request(NamedTuple):
    tokens: Tokens       # the tokens whose K/V the request computes: prompt + output
    prompt_len: int      # >= 2, so the admission match (all but the last prompt token) is not empty
    priority: int


class Workload(NamedTuple):
    requests: Callable[[random.Random], Iterator[Request]]
    capacity_tokens: int     # the KV pool, in tokens


# ----------------------------------------------------------------- workloads
VOCAB = 32_000
MAX_TOKENS = 1_200


def random_requests(rng: random.Random) -> Iterator[Request]:
    """Tree-shaped prompts: each request picks a shape, most of them reusing earlier text."""
    def text(low: int, high: int) -> Tokens:
        return tuple(rng.randrange(VOCAB) for _ in range(rng.randint(low, high)))

    systems = [text(4, 120) for _ in range(6)]
    shots = [text(8, 48) for _ in range(10)]
    history: deque[Request] = deque(maxlen=64)

    def system_prompt() -> Tokens:
        return rng.choice(systems) + text(2, 60)

    def few_shot() -> Tokens:
        return rng.choice(systems) + sum(shots[: rng.randint(1, len(shots))], ()) + text(2, 30)

    def next_turn() -> Tokens:
        return rng.choice(history).tokens + text(2, 60)

    def branch() -> Tokens:
        earlier = rng.choice(history).tokens
        return earlier[: rng.randint(1, len(earlier))] + text(1, 40)

    shapes = [system_prompt, few_shot, next_turn, branch]
    while True:
        if history and rng.random() < 0.1:
            request = rng.choice(history)                    # an exact repeat: all present
        else:
            prompt = rng.choice(shapes if history else shapes[:2])()
            if len(prompt) > MAX_TOKENS:
                prompt = system_prompt()
            request = Request(prompt + text(1, 40), len(prompt), rng.randint(0, 3))
        history.append(request)
        yield request


def mooncake_requests(rng: random.Random, tokens_per_block: int = 16) -> Iterator[Request]:
    """The Mooncake trace's prompts in order (again from the start when it ends),
    each followed by a few output tokens that no other request has."""
    prompts = _mooncake_prompts(tokens_per_block)
    fresh = itertools.count(max(map(max, prompts)) + 1)
    for prompt in itertools.cycle(prompts):
        output = tuple(itertools.islice(fresh, rng.randint(1, 16)))
        yield Request(prompt + output, len(prompt), rng.randint(0, 3))


@functools.cache
def _mooncake_prompts(tokens_per_block: int) -> tuple[Tokens, ...]:
    return tuple(map(tuple, mooncake_prompts(tokens_per_block)))


CHAT_LONGEST = 8_000      # a chat ends once its prompt is longer than this
CHATS = 4                 # chats in progress at once


def chat_requests(rng: random.Random) -> Iterator[Request]:
    """Multi-turn chats, their turns interleaved: each turn's prompt is the whole conversation
    so far plus a new user message, and the answer joins the conversation. Most chats open
    with one of a few system prompts; now and then a user regenerates the last answer (the
    same prompt again, another answer)."""
    def text(low: int, high: int) -> Tokens:              # ids in 0..65535: a 64K vocabulary
        return tuple(array("H", rng.randbytes(2 * rng.randint(low, high))))

    systems = [text(100, 400) for _ in range(3)]

    def new_chat() -> Tokens:
        return rng.choice(systems) if rng.random() < 0.8 else ()

    chats = [new_chat() for _ in range(CHATS)]
    while True:
        i = rng.randrange(CHATS)
        prompt = chats[i] + text(20, 400)                   # the user's message
        for _ in range(2 if rng.random() < 0.1 else 1):     # a regenerated answer
            answer = text(20, 500)
            yield Request(prompt + answer, len(prompt), rng.randint(0, 3))
        chats[i] = new_chat() if len(prompt) > CHAT_LONGEST else prompt + answer


WORKLOADS = {     # pools small enough that evictions are frequent
    "random": Workload(random_requests, capacity_tokens=8_192),
    "mooncake": Workload(mooncake_requests, capacity_tokens=65_536),   # ~9% of the trace's distinct tokens
    "chat": Workload(chat_requests, capacity_tokens=12_288),           # ~2/3 of the chats' working set
}


# -------------------------------------------------------------------- caller
@dataclass
class Running:
    """A request between admission and finish."""
    request: Request
    ref: int             # the Match whose node it holds locked
    pages: list[int]     # one page per page_size tokens (the last one maybe partial)
    cached: int          # leading pages that belong to the tree, not to the request
    finish_at: int       # the step at which it finishes


class Caller:
    """Plays requests against our cache like a serving engine and records every operation."""

    CACHE_PROMPT = 0.3   # chance that a request caches its prompt mid-flight
    PROBE = 0.5          # chance of an unlocked lookup before each admission
    FLUSH = 0.005        # chance of asking to evict the whole pool before an admission
    MAX_STEPS = 8        # a request runs for 1..MAX_STEPS admissions

    def __init__(self, side: OursSide, rng: random.Random):
        self.side, self.rng = side, rng
        self.page_size = side.allocator.page_size
        self.ops: list[Op] = []
        self.cache_ops = 0
        self.running: list[Running] = []
        self.step = 0

    def do(self, op: Op):
        """Record ``op``, run it on our cache, return the cache's raw answer."""
        self.ops.append(op)
        self.cache_ops += isinstance(op, CACHE_OPS)
        return self.side.call(len(self.ops) - 1, op, self.side.prepare(op))

    def match(self, tokens: Tokens) -> tuple[int, MatchResult]:
        """``Match`` ``tokens``: the op's index (to lock by) and what it found."""
        found = self.do(Match(tokens))
        return len(self.ops) - 1, found

    def admission_match(self, tokens: Tokens) -> tuple[int, MatchResult]:
        """The match a request is admitted with: the op to lock by and its prefix
        (``hicache_side.HiCaller`` also loads host copies back)."""
        return self.match(tokens)

    def play(self, request: Request) -> None:
        """One step: finish the requests whose time has come, maybe flush or probe, admit ``request``."""
        self.step += 1
        for run in [r for r in self.running if r.finish_at <= self.step]:
            self.running.remove(run)
            self.finish(run)
        if self.rng.random() < self.FLUSH:
            self.do(Evict(self.side.allocator.num_slots))
        if self.rng.random() < self.PROBE:
            self.match(request.tokens[: self.rng.randint(1, len(request.tokens))])
        self.admit(request)

    def admit(self, request: Request) -> None:
        ref, found = self.admission_match(request.tokens[: request.prompt_len - 1])
        self.do(Lock(ref))
        need = pages_needed(len(request.tokens), self.page_size) - len(found.pages)
        if not self.make_room(need):
            self.do(Unlock(ref))                      # larger than the pool: dropped
            return
        pages = found.pages + self.do(Alloc(need))
        run = Running(request, ref, pages, len(found.pages), self.step + self.rng.randint(1, self.MAX_STEPS))
        if self.rng.random() < self.CACHE_PROMPT:
            self.cache_prompt(run)
        self.running.append(run)

    def make_room(self, need: int) -> bool:
        """Evict the shortfall; while that is not enough, finish the oldest request."""
        allocator = self.side.allocator
        while allocator.available < need:
            self.do(Evict((need - allocator.available) * self.page_size))
            if allocator.available < need:
                if not self.running:
                    return False
                self.finish(self.running.pop(0))
        return True

    def cache_prompt(self, run: Running) -> None:
        """SGLang's ``cache_unfinished_req``: the tree takes the prompt's whole pages,
        the request frees its duplicates and moves its lock to the longer match."""
        request = run.request
        whole = request.prompt_len // self.page_size
        present = self.do(Insert(request.tokens[: request.prompt_len], tuple(run.pages[:whole]), request.priority))
        self.free_duplicates(run, present)
        ref, found = self.match(request.tokens[: request.prompt_len])
        self.do(Lock(ref))
        self.do(Unlock(run.ref))
        run.ref, run.cached = ref, len(found.pages)
        run.pages[: run.cached] = found.pages

    def finish(self, run: Running) -> None:
        """SGLang's ``cache_finished_req``: insert, free duplicates and the tail, unlock."""
        request = run.request
        whole = len(request.tokens) // self.page_size
        given = run.pages if self.rng.random() < 0.5 else run.pages[:whole]   # ceil or floor
        present = self.do(Insert(request.tokens, tuple(given), request.priority))
        self.free_duplicates(run, present)
        if run.pages[whole:]:
            self.do(Free(tuple(run.pages[whole:])))
        self.do(Unlock(run.ref))

    def free_duplicates(self, run: Running, present: int) -> None:
        """Free the request's own pages for tokens the tree already had."""
        duplicates = run.pages[run.cached: present // self.page_size]
        if duplicates:
            self.do(Free(tuple(duplicates)))

    def drain(self) -> None:
        """Finish every running request, oldest first."""
        while self.running:
            self.finish(self.running.pop(0))


def record_stream(workload: str, page_size: int, eviction: str, num_ops: int, seed: int = 0) -> list[Op]:
    """At least ``num_ops`` cache operations of ``workload``, all requests finished at the end."""
    side = OursSide(WORKLOADS[workload].capacity_tokens // page_size, page_size, eviction)
    return play_requests(Caller(side, random.Random(f"{seed}/caller")), workload, num_ops, seed)


def play_requests(caller: Caller, workload: str, num_ops: int, seed: int) -> list[Op]:
    """Play ``workload``'s requests through ``caller`` until it has made ``num_ops`` cache operations,
    then finish every request; the operations it recorded."""
    for request in WORKLOADS[workload].requests(random.Random(f"{seed}/{workload}")):
        if caller.cache_ops >= num_ops:
            break
        caller.play(request)
    caller.drain()
    return caller.ops
