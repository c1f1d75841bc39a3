"""Replays and Belady's optimum on small hand-checked streams."""
from __future__ import annotations

from radixlib.replay import belady, distinct_pages, hit_rate_curves, next_uses, prefix_page_ids, replay

A, B, C = [1, 2, 3, 4], [1, 2, 5, 6], [7, 8, 9, 9]


def test_prefix_page_ids_name_a_page_with_its_prefix():
    assert prefix_page_ids([A, B, [3, 4, 1, 2], A + [0]], 2) == [[0, 1], [0, 2], [3, 4], [0, 1]]
    assert distinct_pages([A, B], 2) == 3


def test_next_uses():
    assert next_uses([[0, 1], [0, 2], [0, 1]]) == [[1, 2], [2, 3], [3, 3]]


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
