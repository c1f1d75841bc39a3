"""radixlib.block_hash: vLLM v1's hashed-block prefix cache.

Unit tests pin each rule (hashes chained and equal to vLLM's bytes, whole blocks only,
the len-1 cap, ref counts, tail-first freeing, eviction only on reuse, no merging of
equal blocks); a property test plays random request streams against a naive reference
that keys blocks by their whole prefix instead of a hash; the differential test replays
the streams of ``tests/data/vllm_streams.py`` and compares every outcome with what vLLM
0.33.0's own ``KVCacheManager`` decided (recorded by ``tests/data/record_vllm.py``).
"""
from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radixlib.block_hash import SEED, BlockCache, block_hashes, metadata_bytes, replay_blocks, sha256_pickle
from radixlib.pages import PageAllocator, pages_needed
from radixlib.radix_cache import InvariantError
from radixlib.replay import replay
from radixlib.workloads import mooncake_prompts

DATA = Path(__file__).resolve().parent / "data"
spec = importlib.util.spec_from_file_location("vllm_streams", DATA / "vllm_streams.py")
vllm_streams = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vllm_streams)

# Printed by vLLM 0.33.0 itself (kv_cache_utils.hash_block_tokens with sha256, init_none_hash(sha256)).
VLLM_NONE_HASH = "066b1e8987e027138e98701c46128929378935f9b6cd1549105ae6b4f0d71198"
VLLM_1234 = "52a7f141c60918f65779927090482b5a24adbe68c8613a211a1eb4e3edd9361a"
VLLM_1234_5678 = "bee96bce54f5fcaba04c4a3fc2491b30b48e29dbbd38a327d41bc1f76b956dde"
VLLM_1234_SALT_ALICE = "562fc8e9250f227ee6677c769b626e9491a61d5204bbe5c6e1686a6f48f3ef8b"


def make(num_pages: int = 16, block_size: int = 4) -> BlockCache:
    return BlockCache(PageAllocator(num_pages, block_size))


def state(cache: BlockCache) -> tuple:
    """Everything observable about a block cache and its allocator."""
    return (cache.snapshot(), cache.free_pages, cache.evicted_blocks, cache.allocator.available,
            sorted(cache.allocator.allocated()))


# ------------------------------------------------------------------ hashes
def test_hashes_equal_vllm_bytes():
    assert sha256_pickle(SEED).hex() == VLLM_NONE_HASH
    assert [h.hex() for h in block_hashes([1, 2, 3, 4, 5, 6, 7, 8, 9], 4)] == [VLLM_1234, VLLM_1234_5678]
    assert block_hashes([1, 2, 3, 4], 4, cache_salt="alice")[0].hex() == VLLM_1234_SALT_ALICE


def test_only_full_blocks_get_a_hash():
    assert block_hashes([1, 2, 3], 4) == []
    assert len(block_hashes(list(range(11)), 4)) == 2


def test_a_hash_stands_for_the_whole_prefix():
    a, b = block_hashes([1, 2, 3, 4, 5, 6, 7, 8], 4), block_hashes([9, 2, 3, 4, 5, 6, 7, 8], 4)
    assert a[0] != b[0] and a[1] != b[1]                       # same block 1 tokens, other parent
    salted = block_hashes([1, 2, 3, 4, 5, 6, 7, 8], 4, cache_salt="bob")
    assert salted[0] != a[0] and salted[1] != a[1]             # the salt reaches every block through the chain


def test_known_hashes_are_extended_not_recomputed():
    tokens = list(range(12))
    head = block_hashes(tokens[:8], 4)
    calls = []
    tail = block_hashes(tokens, 4, known=head, hash_fn=lambda x: calls.append(x) or sha256_pickle(x))
    assert tail == block_hashes(tokens, 4) and len(calls) == 1


# ---------------------------------------------------------------- requests
def test_a_hit_is_whole_blocks_and_leaves_the_last_token():
    cache = make()
    cache.serve(list(range(8)))
    assert cache.peek(list(range(8))) == 4                    # identical prompt: block 2 is recomputed
    assert cache.peek(list(range(9))) == 8
    assert cache.peek(list(range(6)) + [99]) == 4              # diverges inside block 2
    assert cache.peek([0, 1, 2]) == 0
    assert cache.peek(list(range(8)), cache_salt="x") == 0     # another tenant sees nothing


def test_hit_blocks_are_shared_and_counted():
    cache = make()
    a = cache.admit(list(range(10)))
    b = cache.admit(list(range(8)) + [50, 51])
    assert b.prefix_len == 8 and b.pages[:2] == a.pages[:2] and b.pages[2] != a.pages[2]
    cache.check_invariants([a, b])
    cache.free(a)
    assert cache.free_pages == 16 - 2 - 1                      # a's partial page is free; shared pages still held
    cache.free(b)
    cache.check_invariants([])


def test_free_queues_the_tail_first_and_frees_the_partial_block():
    cache = make()
    req = cache.admit(list(range(10)))
    hashes, pages = req.hashes, req.pages
    cache.free(req)
    assert cache.snapshot()[0] == hashes[::-1]                 # block 1 is evicted before block 0
    assert cache.allocator.is_free(pages[2])                   # the partial block went back at once
    assert cache.free_pages == 16


def test_eviction_takes_free_pages_first_then_the_least_recently_freed():
    cache = make(num_pages=6)
    a, b = cache.admit(list(range(8))), cache.admit([10 + i for i in range(8)])
    cache.free(a)
    cache.free(b)
    assert cache.evicted_blocks == 0 and cache.allocator.available == 2
    c = cache.admit([20 + i for i in range(12)])               # 3 pages: 2 free, then a's tail
    assert cache.evicted_blocks == 1 and cache.peek(list(range(8)) + [0]) == 4
    cache.free(c)
    assert cache.peek([10 + i for i in range(8)] + [0]) == 8   # b was freed later: untouched
    cache.check_invariants([])


def test_a_hit_refreshes_its_blocks_when_it_is_freed():
    cache = make(num_pages=4)
    cache.serve(list(range(5)))                                # blocks A0 (queued), partial freed
    cache.serve([10, 11, 12, 13, 14])                          # B0
    cache.serve(list(range(4)) + [7, 7])                       # hits A0; A0 re-queued after B0
    cache.serve([20, 21, 22, 23, 24, 25, 26, 27, 28])          # 3 pages: 2 free... then B0 goes first
    assert cache.peek(list(range(5))) == 4 and cache.peek([10, 11, 12, 13, 14]) == 0


def test_equal_blocks_are_not_merged():
    cache = make()
    cache.serve(list(range(8)))
    before = cache.free_pages
    cache.serve(list(range(8)))                                # hit 1 block, recompute and re-cache block 1
    queue, cached = cache.snapshot()
    assert len(cached) == 3 and len(set(cached)) == 2 and cache.free_pages == before
    assert cache.peek(list(range(9))) == 8
    cache.check_invariants([])


def test_extend_caches_the_blocks_decode_fills():
    cache = make()
    req = cache.admit([1, 2, 3, 4, 5, 6])
    assert len(cache.snapshot()[1]) == 1
    assert cache.extend(req, [7, 8, 9])
    assert req.tokens == list(range(1, 10)) and len(req.pages) == 3 and len(cache.snapshot()[1]) == 2
    cache.check_invariants([req])
    cache.free(req)
    assert cache.peek(list(range(1, 10))) == 8


def test_no_room_changes_nothing():
    cache = make(num_pages=3)
    held = cache.admit(list(range(8)))
    before = state(cache)
    assert cache.admit(list(range(20, 30))) is None
    assert not cache.extend(held, list(range(100, 110)))
    assert state(cache) == before and held.tokens == list(range(8))
    cache.check_invariants([held])


def test_a_queued_hit_counts_against_the_free_pages():
    cache = make(num_pages=3)
    cache.serve(list(range(8)))                                # both blocks queued, 1 page free
    assert cache.admit(list(range(8)) + list(range(40, 45))) is None   # 2 fresh + 2 queued hits > 3
    req = cache.admit(list(range(8)) + [40])
    assert req is not None and req.prefix_len == 8


def test_a_prompt_that_never_fits_is_not_cached():
    cache = make(num_pages=2)
    served = cache.serve(list(range(12)))
    assert not served.stored and served.prefix_len == 0 and cache.free_pages == 2


@pytest.mark.parametrize("call", [
    lambda c, r: c.admit([]),
    lambda c, r: c.admit([1, -2, 3]),
    lambda c, r: c.admit([1, "x"]),
    lambda c, r: c.admit([1, 2, 3], cache_salt=7),
    lambda c, r: c.extend(r, []),
    lambda c, r: c.extend(r, [1.5]),
    lambda c, r: c.peek([]),
])
def test_bad_input_raises_and_changes_nothing(call):
    cache = make()
    req = cache.admit(list(range(6)))
    before = state(cache)
    with pytest.raises((TypeError, ValueError)):
        call(cache, req)
    assert state(cache) == before
    cache.check_invariants([req])


def test_freeing_twice_or_elsewhere_raises_and_changes_nothing():
    cache, other = make(), make()
    req = cache.admit(list(range(6)))
    with pytest.raises(ValueError, match="holds no pages"):
        other.free(req)
    cache.free(req)
    before = state(cache)
    for call in (cache.free, lambda r: cache.extend(r, [1])):
        with pytest.raises(ValueError, match="holds no pages"):
            call(req)
    assert state(cache) == before


def test_check_invariants_catches_a_corrupted_cache():
    cache = make()
    req = cache.admit(list(range(9)))
    with pytest.raises(InvariantError):
        cache.check_invariants([])                              # a held page nobody claims
    page = req.pages[0]
    cache.free(req)
    cache._refs[page] = 1                                      # corrupt on purpose: queued and held
    with pytest.raises(InvariantError):
        cache.check_invariants([])


# ------------------------------------------------------------ property test
class NaiveBlocks:
    """The same rules with no hashing: a block is named by (salt, its whole prefix); lists only."""

    def __init__(self, num_pages: int, block_size: int):
        self.bs, self.plain_free = block_size, num_pages
        self.cached: list[list] = []          # [name, refs] per cached block, in caching order
        self.queue: list[list] = []           # records with refs 0, eviction order
        self.held: dict[int, list[list]] = {}     # request -> its block records (name None: not cached)
        self.tokens: dict[int, tuple[list[int], str | None]] = {}

    def name(self, tokens, salt, i):
        return salt, tuple(tokens[: (i + 1) * self.bs])

    def hit(self, tokens, salt) -> list[list]:
        out = []
        for i in range((len(tokens) - 1) // self.bs):
            rec = next((r for r in self.cached if r[0] == self.name(tokens, salt, i)), None)
            if rec is None:
                break
            out.append(rec)
        return out

    def take(self, n: int) -> list[list]:
        from_free = min(n, self.plain_free)
        self.plain_free -= from_free
        for _ in range(n - from_free):
            victim = self.queue.pop(0)
            self.cached = [r for r in self.cached if r is not victim]
        return [[None, 1] for _ in range(n)]

    def name_full_blocks(self, rid):
        tokens, salt = self.tokens[rid]
        for i, rec in enumerate(self.held[rid][: len(tokens) // self.bs]):
            if rec[0] is None:
                rec[0] = self.name(tokens, salt, i)
                self.cached.append(rec)

    def admit(self, rid, tokens, salt):
        hit = self.hit(tokens, salt)
        fresh = pages_needed(len(tokens), self.bs) - len(hit)
        if fresh + sum(r[1] == 0 for r in hit) > self.plain_free + len(self.queue):
            return None
        for rec in hit:
            self.queue = [r for r in self.queue if r is not rec]
            rec[1] += 1
        self.held[rid], self.tokens[rid] = hit + self.take(fresh), (list(tokens), salt)
        self.name_full_blocks(rid)
        return len(hit) * self.bs

    def extend(self, rid, tokens):
        total = len(self.tokens[rid][0]) + len(tokens)
        fresh = pages_needed(total, self.bs) - len(self.held[rid])
        if fresh > self.plain_free + len(self.queue):
            return False
        self.tokens[rid][0].extend(tokens)
        self.held[rid] += self.take(fresh)
        self.name_full_blocks(rid)
        return True

    def free(self, rid):
        for rec in reversed(self.held.pop(rid)):
            rec[1] -= 1
            if rec[1] == 0 and rec[0] is None:
                self.plain_free += 1
            elif rec[1] == 0:
                self.queue.append(rec)


tokens_st = st.lists(st.integers(0, 2), min_size=1, max_size=14)
op_st = st.one_of(st.tuples(st.just("admit"), tokens_st, st.sampled_from([None, None, "a"])),
                  st.tuples(st.just("extend"), st.integers(0, 5), tokens_st),
                  st.tuples(st.just("free"), st.integers(0, 5)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block_size=st.sampled_from([1, 2, 4]), num_pages=st.integers(2, 8), ops=st.lists(op_st, max_size=40))
def test_matches_a_naive_reference(block_size, num_pages, ops):
    cache, naive = BlockCache(PageAllocator(num_pages, block_size)), NaiveBlocks(num_pages, block_size)
    live: dict[int, object] = {}
    names: dict[bytes, tuple] = {}
    for rid, op in enumerate(ops):
        if op[0] == "admit":
            req = cache.admit(op[1], op[2])
            assert (None if req is None else req.prefix_len) == naive.admit(rid, op[1], op[2])
            live.update({} if req is None else {rid: req})
        elif live and op[0] == "extend":
            key = sorted(live)[op[1] % len(live)]
            assert cache.extend(live[key], op[2]) == naive.extend(key, op[2])
        elif live:
            key = sorted(live)[op[1] % len(live)]
            cache.free(live.pop(key))
            naive.free(key)
        for req in live.values():
            names.update((h, naive.name(req.tokens, req.cache_salt, i)) for i, h in enumerate(req.hashes))
        queue, cached = cache.snapshot()
        assert [names[h] for h in queue] == [r[0] for r in naive.queue]
        assert sorted(map(repr, (names[h] for h in cached))) == sorted(repr(r[0]) for r in naive.cached)
        assert cache.free_pages == naive.plain_free + len(naive.queue)
        cache.check_invariants(live.values())


# --------------------------------------------------------------- vs vLLM
RECORDED = json.loads((DATA / "vllm_decisions.json").read_text())


@functools.cache
def played(name: str) -> tuple[list, vllm_streams.OursSide, list]:
    """Stream ``name``'s operations, our side after playing them, and our outcomes (played once)."""
    stream = vllm_streams.STREAMS[name]
    ops, side = vllm_streams.operations(stream), vllm_streams.OursSide(stream)
    return ops, side, vllm_streams.play(ops, side)


@pytest.mark.parametrize("name", sorted(vllm_streams.STREAMS))
def test_same_decisions_as_vllm(name):
    """Every outcome (hit, free blocks, queue order and cached blocks) equals vLLM 0.33.0's."""
    stream, recorded = vllm_streams.STREAMS[name], RECORDED["streams"][name]
    ops, _, ours = played(name)
    assert recorded["stream"] == stream._asdict() and recorded["fingerprint"] == vllm_streams.fingerprint(ops), \
        "the stream changed since it was recorded: re-run tests/data/record_vllm.py"
    for index, (mine, theirs) in enumerate(zip(ours, recorded["outcomes"], strict=True)):
        assert mine == theirs, f"op {index} {str(ops[index])[:80]}: radixlib {mine}, vLLM {theirs}"


def test_the_recorded_streams_exercise_every_rule():
    """Hits, salts, evictions, refused admissions and refused extends all occur in the recordings."""
    seen = {"hit": 0, "salt": 0, "no room": 0, "extend refused": 0, "evicted": 0}
    for name in vllm_streams.STREAMS:
        (ops, side, _), outcomes = played(name), RECORDED["streams"][name]["outcomes"]
        seen["evicted"] += side.cache.evicted_blocks
        for op, outcome in zip(ops, outcomes):
            result = outcome.split(":")[0]
            seen["hit"] += op[0] == "admit" and int(result) > 0
            seen["salt"] += op[0] == "admit" and op[3] is not None
            seen["no room"] += op[0] == "admit" and result == "-1"
            seen["extend refused"] += op[0] == "extend" and result == "0"
    assert min(seen.values()) >= 10, seen


class HeadFirst(BlockCache):
    def free(self, req):
        req.pages.reverse()
        super().free(req)


class Uncapped(BlockCache):
    def lookup(self, hashes, max_tokens):
        return super().lookup(hashes, max_tokens + 1)


class Merging(BlockCache):
    """Caches a block only if no equal block is cached (the tree's way)."""
    def _cache_full(self, req):
        for page, h in zip(req.pages[req.num_cached: len(req.hashes)], req.hashes[req.num_cached:]):
            if h not in self._table:
                self._hash[page], self._table[h] = h, [page]
        req.num_cached = len(req.hashes)


class NoSalt(BlockCache):
    def request(self, tokens, cache_salt=None):
        return super().request(tokens, None)


@pytest.mark.parametrize("mutant", [HeadFirst, Uncapped, Merging, NoSalt])
def test_the_differential_check_catches_a_plausible_mistake(mutant, monkeypatch):
    monkeypatch.setattr(vllm_streams, "BlockCache", mutant)
    differs = 0
    for name in ("random-bs4", "random-bs16"):
        stream = vllm_streams.STREAMS[name]
        ours = vllm_streams.play(vllm_streams.operations(stream), vllm_streams.OursSide(stream))
        differs += ours != RECORDED["streams"][name]["outcomes"]
    assert differs


# --------------------------------------------------------- replays, memory
def test_replay_blocks_serves_each_prompt_like_serve():
    prompts = mooncake_prompts(16, limit=300)
    run = replay_blocks(prompts, num_pages=400, block_size=16)
    cache = BlockCache(PageAllocator(400, 16))
    assert run.prefix_lens == [cache.serve(p).prefix_len for p in prompts]
    assert run.occupancy[-1] == 400 - cache.allocator.available and 0 < run.hit_rate < 1


def test_with_room_for_everything_tree_and_blocks_give_every_request_the_same_hit():
    prompts = mooncake_prompts(16, limit=600)
    room = sum(map(len, prompts)) // 16 + len(prompts)
    assert replay(prompts, room, 16).prefix_lens == replay_blocks(prompts, room, 16).prefix_lens


def test_metadata_bytes_counts_each_object_once_and_stops_at_exclude():
    shared = list(range(1000, 1100))
    once, twice = metadata_bytes([shared]), metadata_bytes([shared, shared])
    assert twice == once + 8 and metadata_bytes([shared], exclude=[shared]) == sys.getsizeof([shared])
    cache = make()
    empty = metadata_bytes(cache, exclude=[cache.allocator])
    cache.serve(list(range(40)))
    assert metadata_bytes(cache, exclude=[cache.allocator]) > empty


def test_block_hash_imports_the_standard_library_only():
    code = ("import sys\nimport radixlib.block_hash\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'torch', 'numpy', 'transformers', 'matplotlib', 'vllm', 'sglang'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"


def test_chapter_09_plots_draw_one_line_per_design_with_labels():
    from radixlib.plots import plot_designs_hit_rate, plot_lookup_cost, plot_staircase
    figures = [plot_designs_hit_rate([0.1, 1.0], {"tree": [0.2, 0.6], "blocks": [0.21, 0.6]}, "t"),
               plot_staircase([0, 16, 32], {"tree, page 1": [0, 16, 32], "blocks": [0, 16, 32]}, "t"),
               plot_lookup_cost({"64": {"tree": 2.0, "blocks": 7.0}, "1024": {"tree": 12.0, "blocks": 90.0}},
                                "prompt tokens", "t")]
    for fig in figures:
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None
        assert [line.get_label() for line in ax.get_lines()] == [t.get_text() for t in ax.get_legend().get_texts()]
        assert len(ax.get_lines()) == 2
    assert list(figures[2].axes[0].get_lines()[1].get_xdata()) == [64, 1024]     # keys sorted as numbers
