"""Replays and Belady's optimum on small hand-checked streams, and Belady against every policy."""
from __future__ import annotations

import random

from radixlib import POLICIES
from radixlib.replay import belady, distinct_pages, hit_rate_curves, next_uses, prefix_page_ids, replay

A, B, C = [1, 2, 3, 4], [1, 2, 5, 6], [7, 8, 9, 9]


def test_prefix_page_ids_name_a_page_with_its_prefix():
    assert prefix_page_ids([A, B, [3, 4, 1, 2], A + [0]], 2) == [[0, 1], [0, 2], [3, 4], [0, 1]]
    assert distinct_pages([A, B], 2) == 3


def test_next_uses_count_only_uses_that_can_hit():
    assert next_uses([[0, 1], [0, 2], [0, 1]], [2, 2, 2]) == [[1, 2], [2, 3], [3, 3]]
    # The last request can hit only its first page (the len-1 cap): page 1's use there does not count.
    assert next_uses([[0, 1], [0, 2], [0, 1]], [2, 2, 1]) == [[1, 3], [2, 3], [3, 3]]


def test_belady_is_not_beaten_where_a_use_cannot_hit():
    """The review's counterexample (page size 1, 8 pages): MRU got 13 of 29 tokens, and Belady,
    counting uses beyond the len-1 cap and of one-token prompts, 12."""
    stream = [[383, 502, 633, 49, 842], [867], [896, 564, 726], [383, 502, 633], [867], [383], [383, 502],
              [383, 502, 633, 49], [383, 502, 633, 49, 842], [896, 564, 726, 691]]
    assert sum(replay(stream, 8, 1, "mru").prefix_lens) == 13
    assert sum(belady(stream, 8, 1).prefix_lens) == 13


def random_stream(rng: random.Random) -> tuple[list[list[int]], int, int]:
    """A few prompts grown from shared stems over a tiny vocabulary, a page size and a capacity."""
    page_size, vocab = rng.choice([1, 2, 4]), rng.choice([2, 3, 5])
    stems = [[rng.randrange(vocab) for _ in range(rng.randint(1, 12))] for _ in range(4)]
    stream = []
    for _ in range(rng.randint(1, 12)):
        stem = rng.choice(stems)
        stream.append(stem[:rng.randint(1, len(stem))] + [rng.randrange(vocab) for _ in range(rng.randint(0, 3))])
    longest = max(-(-len(p) // page_size) for p in stream)
    return stream, page_size, rng.randint(longest, longest + 6)


def test_no_policy_beats_belady_on_10000_random_streams():
    rng = random.Random(2026)
    for case in range(10_000):
        stream, page_size, num_pages = random_stream(rng)
        best = sum(belady(stream, num_pages, page_size).prefix_lens)
        for policy in POLICIES:
            got = sum(replay(stream, num_pages, page_size, policy).prefix_lens)
            assert got <= best, f"case {case}: {policy} {got} > belady {best} ({num_pages} x {page_size}): {stream}"


def test_replay_counts_cached_tokens_and_occupancy():
    run = replay([A, B, A], num_pages=8, page_size=2)
    assert run.prefix_lens == [0, 2, 2] and run.prompt_lens == [4, 4, 4]   # the len-1 cap: A's last page runs
    assert run.occupancy == [2, 3, 3] and run.hit_rate == 4 / 12
    assert replay([A, A + [5]], 8, 2).prefix_lens == [0, 4]                 # the cap leaves one token to run


def test_belady_beats_lru_where_lru_evicts_the_next_needed_page():
    stream = [A, C, A, C, A]                 # 3 pages: LRU always drops what comes next
    lru, best = replay(stream, 3, 2, "lru"), belady(stream, 3, 2)
    assert lru.prefix_lens == [0] * 5 and best.prefix_lens == [0, 0, 2, 2, 2]
    assert max(best.occupancy) <= 3


def test_belady_with_room_for_everything_equals_any_policy():
    stream = [A, B, C, A, B, C]
    assert belady(stream, 100, 2).prefix_lens == replay(stream, 100, 2, "lru").prefix_lens


def test_hit_rate_curves_have_every_policy_and_belady_on_top():
    stream = [A, B, C, A, C, B, A] * 3
    curves = hit_rate_curves(stream, 2, [0.5, 1.0], ["lru", "mru"])
    assert set(curves) == {"lru", "mru", "belady"}
    for i in range(2):
        assert curves["belady"][i][1] >= max(curves["lru"][i][1], curves["mru"][i][1])
