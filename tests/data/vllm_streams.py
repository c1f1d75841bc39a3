"""Fixed operation streams for the differential check of ``radixlib.block_hash`` against vLLM.

Both sides play the same seeded streams: ``record_vllm.py`` plays them on vLLM's own
``KVCacheManager`` (once, with vLLM installed) and stores the outcomes in
``vllm_decisions.json``; ``tests/test_block_hash.py`` plays them on ``BlockCache`` and
compares. A stream is a list of operations on requests::

    ("admit", rid, tokens, salt)   look up the prompt, hold the hit, allocate the rest, cache full blocks
    ("extend", rid, tokens)        decode: append computed tokens, cache the blocks they fill
    ("free", rid)                  finish: release the blocks, tail first

The operations never depend on a cache's answers. ``play`` skips the operations of a
request whose admission found no room, and frees a request whose extend finds no room
(vLLM's scheduler would preempt it). After every operation it records one outcome::

    "<hit tokens, -1: no room | 1/0: extended>:<free blocks>:<digest>"

where the digest covers the hashes of the queued blocks in eviction order and of every
cached block: two caches that agree on every outcome made the same decisions.
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from typing import NamedTuple, Protocol

from radixlib.block_hash import BlockCache
from radixlib.pages import PageAllocator
from radixlib.workloads import mooncake_prompts

DIGEST_CHARS = 6                 # hex characters of the state digest kept per operation
MOONCAKE_FROM = 3000             # late in the trace, where most prompts share a prefix


class Stream(NamedTuple):
    seed: int
    block_size: int
    num_pages: int               # usable blocks (vLLM's pool has one more: its null block)
    num_ops: int
    source: str                  # "random" (tree-shaped prompts) or "mooncake"


STREAMS = {
    "random-bs1": Stream(1, 1, 100, 1500, "random"),
    "random-bs4": Stream(2, 4, 32, 2000, "random"),
    "random-bs16": Stream(3, 16, 14, 2000, "random"),
    "mooncake-bs16": Stream(4, 16, 8000, 1500, "mooncake"),
}


class Side(Protocol):
    def admit(self, rid: int, tokens: list[int], salt: str | None) -> int | None: ...
    def extend(self, rid: int, tokens: list[int]) -> bool: ...
    def free(self, rid: int) -> None: ...
    def free_blocks(self) -> int: ...
    def snapshot(self) -> tuple[list[bytes], list[bytes]]: ...


class OursSide:
    """``radixlib.block_hash.BlockCache`` behind the ``Side`` interface."""

    def __init__(self, stream: Stream):
        self.cache = BlockCache(PageAllocator(stream.num_pages, stream.block_size))
        self.requests = {}

    def admit(self, rid, tokens, salt):
        req = self.cache.admit(tokens, salt)
        if req is not None:
            self.requests[rid] = req
        return None if req is None else req.prefix_len

    def extend(self, rid, tokens):
        return self.cache.extend(self.requests[rid], tokens)

    def free(self, rid):
        self.cache.free(self.requests.pop(rid))

    def free_blocks(self):
        return self.cache.free_pages

    def snapshot(self):
        return self.cache.snapshot()


# ------------------------------------------------------------------------ streams
def operations(stream: Stream) -> list[tuple]:
    """The stream's operations (the same on every machine and Python version)."""
    rng = random.Random(stream.seed)
    prompts = _random_prompts(rng, stream.block_size) if stream.source == "random" else _mooncake_prompts()
    ops, live, rid = [], [], 0
    while len(ops) < stream.num_ops:
        if not live or (len(live) < 4 and rng.random() < 0.45):
            salt = rng.choice(["alice", "bob"]) if stream.source == "random" and rng.random() < 0.15 else None
            ops.append(("admit", rid, next(prompts), salt))
            live.append(rid)
            rid += 1
        elif rng.random() < 0.6:
            ops.append(("extend", rng.choice(live), [rng.randrange(1000) for _ in range(rng.randint(1, 9))]))
        else:
            ops.append(("free", live.pop(rng.randrange(len(live)))))
    return ops + [("free", r) for r in live]


def _random_prompts(rng: random.Random, block_size: int) -> Iterator[list[int]]:
    """Tree-shaped prompts: shared system prompts, repeats, strict prefixes, branches, continuations."""
    def text(low: int, high: int) -> list[int]:
        return [rng.randrange(1000) for _ in range(rng.randint(low, high) * max(2, block_size // 2))]

    systems, seen = [text(1, 12) for _ in range(4)], []
    while True:
        shape, earlier = rng.random(), rng.choice(seen) if seen else text(1, 8)
        if shape < 0.3:
            prompt = rng.choice(systems) + text(1, 6)
        elif shape < 0.45:
            prompt = list(earlier)                                  # an exact repeat
        elif shape < 0.6:
            prompt = earlier[: rng.randint(1, len(earlier))]        # a strict prefix
        elif shape < 0.8:
            prompt = earlier[: rng.randint(1, len(earlier))] + text(1, 4)   # a branch
        elif shape < 0.9:
            prompt = earlier + text(1, 5)                           # the next turn
        else:
            prompt = text(1, 10)
        seen.append(prompt)
        yield prompt


def _mooncake_prompts() -> Iterator[list[int]]:
    yield from mooncake_prompts(16)[MOONCAKE_FROM:]


# ------------------------------------------------------------------------ playing
def play(ops: list[tuple], side: Side) -> list[str]:
    """Apply ``ops`` to ``side``; one outcome string per operation (see the module docstring)."""
    live, out = set(), []
    for op in ops:
        result = ""
        if op[0] == "admit":
            hit = side.admit(op[1], op[2], op[3])
            live |= set() if hit is None else {op[1]}
            result = str(-1 if hit is None else hit)
        elif op[1] in live and op[0] == "extend":
            extended = side.extend(op[1], op[2])
            if not extended:
                side.free(op[1])
                live.discard(op[1])
            result = str(int(extended))
        elif op[1] in live:
            side.free(op[1])
            live.discard(op[1])
        out.append(f"{result}:{side.free_blocks()}:{digest(*side.snapshot())}")
    return out


def digest(queue: list[bytes], cached: list[bytes]) -> str:
    """A short fingerprint of the queue (in order) and of every cached block's hash."""
    return hashlib.sha256(b"".join(queue) + b"|" + b"".join(cached)).hexdigest()[:DIGEST_CHARS]


def fingerprint(ops: list[tuple]) -> str:
    """Identifies a stream, so that a changed generator cannot be compared with old recordings."""
    return hashlib.sha256(repr(ops).encode()).hexdigest()[:16]
