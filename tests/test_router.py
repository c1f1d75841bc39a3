import pytest
from helpers import finish, make_cache, prefill, snapshot

from radixlib import OutOfPages
from radixlib.request import Request
from radixlib.router import MatchStatus, Router


def router(num_pages=32, page_size=4, enable_cache=True) -> Router:
    return Router(make_cache(num_pages=num_pages, page_size=page_size), enable_cache)


def test_match_statuses_and_the_len_minus_one_cap():
    r = router(page_size=4)
    first = Request(0, list(range(1, 13)))                # 12 tokens = 3 pages
    assert r.match(first).status is MatchStatus.MISS
    r.reserve(first, 12)
    first.kv_len = 12
    r.cache_unfinished(first)
    same = Request(1, list(range(1, 13)))
    adm = r.match(same)
    assert adm.status is MatchStatus.FULL and adm.prefix_len == 8     # cap 11 -> 2 whole pages
    longer = Request(2, list(range(1, 13)) + [50, 51])
    adm = r.match(longer)
    assert adm.status is MatchStatus.FULL and adm.prefix_len == 12    # cap 13 -> 3 pages, all cached
    other = Request(3, list(range(1, 9)) + [60, 61, 62, 63, 64])
    adm = r.match(other)
    assert adm.status is MatchStatus.PARTIAL and adm.prefix_len == 8
    assert adm.pages == first.pages[:2]


def test_admission_locks_the_matched_path():
    r = router(page_size=1)
    a = Request(0, [1, 2, 3, 4])
    prefill(r, a)
    b = Request(1, [1, 2, 3, 9])
    r.match(b)
    assert r.cache.protected_size == 4            # a holds [1 2 3 4]; b's [1 2 3] is inside it
    r.release(a)
    assert r.cache.protected_size == 3 and r.cache.evict(100) == 1
    r.check_invariants([b])


def test_concurrent_prefills_of_one_prompt_keep_a_single_copy():
    r = router(page_size=2)
    a, b = Request(0, [1, 2, 3, 4, 5]), Request(1, [1, 2, 3, 4, 5])
    for req in (a, b):                               # both miss: the prompt is not cached yet
        r.match(req)
        r.reserve(req, 5)
        req.kv_len = 5
    r.check_invariants([a, b])
    r.cache_unfinished(a)
    r.cache_unfinished(b)                             # b's duplicate pages go back to the pool
    assert b.pages[:2] == a.pages[:2] and b.prefix_len == 4
    assert r.allocator.available == 32 - 2 - 2        # two tree pages + one tail page each
    r.check_invariants([a, b])


def test_cache_finished_inserts_prompt_and_output_less_the_last_token():
    r = router(page_size=2)
    req = Request(0, [1, 2, 3, 4, 5])
    prefill(r, req)
    finish(r, req, [6, 7, 8])                          # K/V for 1..7; 8 has none
    assert r.cache.total_size == 6                     # [1..6] in whole pages; 7 was the unaligned tail
    assert r.allocator.available == 32 - 3 and r.cache.protected_size == 0
    assert req.node is None and req.pages == []
    r.check_invariants([])


def test_second_turn_of_a_chat_hits_the_whole_first_turn():
    r = router(page_size=4)
    turn1 = Request(0, list(range(1, 22)))             # 21-token prompt
    prefill(r, turn1)
    answer = list(range(100, 112))                     # 12-token answer
    finish(r, turn1, answer)
    turn2 = Request(1, turn1.prompt + answer + [200, 201, 202])
    adm = r.match(turn2)
    assert adm.prefix_len == 32                        # 21 + 12 - 1 = 32 tokens with K/V, page aligned
    assert adm.status is MatchStatus.FULL                 # all 8 whole pages of the 35 matchable tokens


def test_release_frees_own_pages_and_inserts_nothing():
    r = router(page_size=1)
    base = Request(0, [1, 2, 3])
    prefill(r, base)
    req = Request(1, [1, 2, 3, 4, 5])
    r.match(req)
    r.reserve(req, 5)
    r.release(req)
    assert r.cache.total_size == 3 and r.allocator.available == 32 - 3
    r.check_invariants([base])


def test_reserve_beyond_the_pool_raises_and_evicts_nothing():
    r = router(num_pages=4, page_size=2)
    cached = Request(0, [1, 2, 3, 4])
    prefill(r, cached)
    r.release(cached)                                  # 2 evictable pages, 2 free
    req = Request(1, [9] * 12)
    r.match(req)
    before = snapshot(r.cache)
    with pytest.raises(OutOfPages, match="need 6 free pages: 2 free and 2 evictable"):
        r.reserve(req, 12)
    assert snapshot(r.cache) == before and req.pages == []
    r.reserve(req, 8)                                  # 4 pages: evicts the cached ones
    assert r.cache.total_size == 0
    r.check_invariants([req])


def test_disabled_router_misses_and_keeps_nothing():
    r = router(page_size=1, enable_cache=False)
    for rid in range(2):
        req = Request(rid, [1, 2, 3])
        assert r.match(req).status is MatchStatus.MISS
        r.reserve(req, 3)
        req.kv_len = 3
        r.cache_unfinished(req)
        finish(r, req, [4])
    assert r.cache.total_size == 0 and r.allocator.available == 32


def test_double_admission_is_refused():
    r = router()
    req = Request(0, [1, 2, 3])
    r.match(req)
    with pytest.raises(ValueError, match="already admitted"):
        r.match(req)


def test_lookup_changes_neither_the_request_nor_the_locks():
    """SGLang's ``Req.init_next_round_input``: the capped match; the lock comes at admission."""
    r = router(page_size=2)
    prefill(r, Request(0, [1, 2, 3, 4, 5, 6]))
    req = Request(1, [1, 2, 3, 4], output=[5, 6, 7])             # prompt + output: 6 matchable
    protected = r.cache.protected_size
    found = r.lookup(req)
    assert (found.prefix_len, found.status) == (6, MatchStatus.FULL)
    assert req.node is None and req.pages == [] and r.cache.protected_size == protected
    r.admit(req, found)
    assert req.prefix_len == req.kv_len == req.cached_tokens == 6 and req.pages == found.pages
    r.check_invariants([req])


def test_a_retracted_request_counts_no_new_cache_hits():
    r = router(page_size=1)
    prefill(r, Request(0, [1, 2, 3, 4]))
    req = Request(1, [1, 2, 9], retractions=1, cached_tokens=2)
    r.match(req)
    assert req.prefix_len == 2 and req.cached_tokens == 2


def test_unlocked_tokens_is_what_a_lock_would_protect():
    r = router(page_size=1)
    a = Request(0, [1, 2, 3, 4])
    prefill(r, a)                                     # [1 2 3 4] locked by a
    r.serve([1, 2, 7, 8])                             # [7 8] unlocked, under the split [1 2]
    node = r.cache.match_prefix([1, 2, 7, 8]).node
    assert r.unlocked_tokens(node) == 2
    r.release(a)
    assert r.unlocked_tokens(node) == 4 and r.unlocked_tokens(r.cache.root) == 0


def test_evict_for_evicts_the_whole_amount_when_short():
    """SGLang's ``evict_from_tree_cache``: with fewer than n slots free, evict n tokens (not n - free)."""
    r = router(num_pages=8, page_size=1)
    for t in ([1, 2], [3, 4], [5, 6]):
        r.serve(t)                                    # 6 cached, 2 free
    r.evict_for(2)
    assert r.cache.total_size == 6                    # 2 free: nothing to do
    r.evict_for(3)
    assert r.cache.total_size == 2 and r.available_tokens == 6 and r.evicted_tokens == 4


def test_caching_what_the_tree_has_still_refreshes_it():
    """``cache_finished_req`` inserts even a fully cached prompt: the path is touched and hit."""
    r = router(page_size=1)
    r.serve([1, 2, 3])
    r.serve([7, 8, 9])
    node = r.cache.match_prefix([1, 2, 3]).node
    hits = node.hits
    r.serve([1, 2, 3])                                # all of it cached already
    assert node.hits == hits + 1
    assert tuple(r.cache.evictable_leaves()[0].key) == (7, 8, 9)   # [1 2 3] is now the most recent
