"""Chapter 09 · Radix tree or hashed blocks: the chained block hash, the lookup it serves, and a
longest-prefix-first queue sorted with hashes alone."""
from __future__ import annotations

import random

from ..block_hash import BlockCache, block_hashes
from ..pages import PageAllocator, pages_needed
from . import Exercise


def _prefix_hash(tokens: list[int], block_size: int, cache_salt: str | None) -> bytes:
    """The last full block's chained hash: the name of the prompt's whole-block prefix."""
    return block_hashes(tokens, block_size, cache_salt)[-1]


def _hash_cases() -> list[tuple]:
    rng = random.Random(9)
    cases = [([1, 2, 3, 4, 5, 6, 7, 8, 9], 4, None), ([1, 2, 3, 4], 4, "alice")]
    for _ in range(150):
        block_size = rng.choice([1, 2, 4, 16])
        tokens = [rng.randrange(50) for _ in range(rng.randint(block_size, 40))]    # at least one full block
        cases.append((tokens, block_size, rng.choice([None, None, "alice", "bob"])))
    return cases


def _block_prefix_hit(cached_prompts: list[list[int]], prompt: list[int], block_size: int) -> int:
    """Tokens of ``prompt`` a block cache serves after ``cached_prompts`` were served, with room for all."""
    cache = BlockCache(PageAllocator(sum(pages_needed(len(p), block_size) for p in cached_prompts) + 1, block_size))
    for tokens in cached_prompts:
        cache.serve(tokens)
    return cache.peek(prompt)


def _branch(rng: random.Random, base: list[int]) -> list[int]:
    """A cut of ``base`` and a tail of its own (tokens from a small vocabulary: chance matches too)."""
    return base[: rng.randint(0, len(base))] + [rng.randrange(20) for _ in range(rng.randint(1, 9))]


def _hit_cases() -> list[tuple]:
    rng = random.Random(10)
    cases = [([[1, 2, 3, 4, 5, 6, 7, 8]], [1, 2, 3, 4, 5, 6, 7, 8], 4), ([[1, 2, 3, 4, 5, 6]], [1, 2, 3, 4, 5, 9], 2)]
    for _ in range(200):
        base = [rng.randrange(20) for _ in range(rng.randint(0, 40))]
        cached = [_branch(rng, base) for _ in range(rng.randint(1, 4))]
        prompt = rng.choice(cached)[: rng.randint(1, 48)] if rng.random() < 0.4 else _branch(rng, base)
        cases.append((cached, prompt, rng.choice([1, 2, 4, 8])))
    return cases


def _hashed_lpm_order(cached_prompts: list[list[int]], waiting: list[list[int]], block_size: int) -> list[int]:
    """Indices of ``waiting``, longest cached prefix first (a stable sort), each prefix found the way a
    hashed-block scheduler would: the request's block hashes, probed from the first until a miss."""
    cache = BlockCache(PageAllocator(sum(pages_needed(len(p), block_size) for p in cached_prompts) + 1, block_size))
    for tokens in cached_prompts:
        cache.serve(tokens)
    kept = [cache.request(p).hashes for p in waiting]               # hashed once, on arrival
    hits = [len(cache.lookup(h, len(p) - 1)) * block_size for h, p in zip(kept, waiting)]
    return sorted(range(len(waiting)), key=lambda i: -hits[i])


def _order_cases() -> list[tuple]:
    rng = random.Random(11)
    base = [1, 2, 3, 4, 5, 6, 7, 8]
    cases = [([base], [[9, 9, 9], base[:5], base, base[:4] + [0, 0]], 4)]    # the repeat's hit stops at len - 1
    for _ in range(120):
        root = [rng.randrange(20) for _ in range(rng.randint(0, 40))]
        cached = [_branch(rng, root) for _ in range(rng.randint(1, 4))]
        waiting = [rng.choice(cached)[: rng.randint(1, 48)] if rng.random() < 0.4 else _branch(rng, root)
                   for _ in range(rng.randint(1, 8))]
        cases.append((cached, waiting, rng.choice([1, 2, 4, 8])))
    return cases


EXERCISES = [
    Exercise("prefix_hash", "implement", _prefix_hash, _hash_cases,
             hint="block i hashes sha256_pickle((parent, tuple(its tokens), extra_keys)); block 0's parent is "
                  "sha256_pickle(SEED), its extra keys (('cache_salt', salt),) if salted, else None; "
                  "a partial block gets no hash; return the last full block's hash",
             source="radixlib.block_hash.block_hashes(...)[-1]"),
    Exercise("block_prefix_hit", "implement", _block_prefix_hit, _hit_cases,
             hint="key every full block by its whole prefix (or a chained hash); a prompt hits its leading "
                  "cached blocks, at most len(prompt) - 1 tokens, in whole blocks",
             source="BlockCache: serve(each cached prompt), then peek(prompt)"),
    Exercise("hashed_lpm_order", "implement", _hashed_lpm_order, _order_cases,
             hint="hash each waiting prompt's full blocks once (any whole-prefix key will do); its cached prefix is "
                  "its leading blocks found among the cached prompts' blocks, at most len(prompt) - 1 tokens; "
                  "return the indices sorted by that length, longest first, ties in arrival order",
             source="BlockCache.request(...).hashes + BlockCache.lookup, sorted longest first (stable)"),
]
