"""Where we deliberately do not copy SGLang 0.5.12 (see DEVIATIONS.md).

Each test pins SGLang's behaviour and ours side by side, so a change on either side
shows up here; where results must still agree, the test says so and checks it.
"""
from __future__ import annotations

import re

import pytest
import torch

from radixlib import PageAllocator, RadixCache
from radixlib.reference.differential import compare
from radixlib.reference.ops import Alloc, Insert, Lock, Match, Unlock
from radixlib.reference.sglang import load_sglang
from radixlib.reference.sides import OursSide, SGLangSide


def sglang_cache(page_size: int = 1):
    return SGLangSide(page_size, "lru").cache


def ours_cache(page_size: int = 1) -> RadixCache:
    return RadixCache(PageAllocator(64, page_size))


def sg_insert(cache, tokens: list[int]) -> int:
    sg = load_sglang()
    slots = torch.arange(100, 100 + len(tokens))
    return cache.insert(sg.InsertParams(key=sg.RadixKey(tokens), value=slots)).prefix_len


def sg_match(cache, tokens: list[int]):
    sg = load_sglang()
    return cache.match_prefix(sg.MatchPrefixParams(key=sg.RadixKey(tokens)))


def ours_insert(cache: RadixCache, tokens: list[int]) -> int:
    return cache.insert(tokens, cache.allocator.alloc(len(tokens) // cache.page_size))


def test_the_tree_keeps_no_reference_to_the_callers_token_list():
    sglang, ours = sglang_cache(), ours_cache()
    tokens = [1, 2, 3]
    sg_insert(sglang, tokens)
    ours_insert(ours, tokens)
    tokens[1] = 9                                   # the caller reuses its list
    assert len(sg_match(sglang, [1, 2, 3]).device_indices) == 1     # SGLang's tree changed
    assert ours.match_prefix([1, 2, 3]).prefix_len == 3
    # Agreement: a caller that does not mutate its lists (every stream) sees equal results.


def test_empty_token_lists_raise_instead_of_matching_nothing():
    sglang, ours = sglang_cache(), ours_cache()
    assert len(sg_match(sglang, []).device_indices) == 0
    assert sg_match(sglang, []).last_device_node is sglang.root_node
    assert sg_insert(sglang, []) == 0
    with pytest.raises(ValueError, match="empty"):
        ours.match_prefix([])
    with pytest.raises(ValueError, match="empty"):
        ours.insert([], [])


def test_keys_shorter_than_a_page_still_agree():
    """Non-empty keys that round down to zero pages: an empty match at the root, nothing inserted."""
    ops = [Alloc(1), Insert((1, 2, 3), (0,)), Match((1, 2, 3)), Lock(2), Unlock(2)]
    assert compare(ops, OursSide(8, 16, "lru"), SGLangSide(16, "lru"))["Match"] == 1


def test_unlock_below_zero_raises_instead_of_going_negative():
    sglang, ours = sglang_cache(), ours_cache()
    sg_insert(sglang, [1, 2])
    ours_insert(ours, [1, 2])
    node = sg_match(sglang, [1, 2]).last_device_node
    sglang.dec_lock_ref(node)
    assert node.lock_ref == -1                      # and a later lock brings it to 0: still evictable
    ours_node = ours.match_prefix([1, 2]).node
    with pytest.raises(ValueError, match="below zero"):
        ours.unlock(ours_node)
    assert ours_node.lock_ref == 0
    # Agreement: balanced lock/unlock (every stream holds locks, then releases them).


def test_locking_an_evicted_node_raises_instead_of_corrupting_the_sizes():
    sglang, ours = sglang_cache(), ours_cache()
    sg_insert(sglang, [1, 2])
    ours_insert(ours, [1, 2])
    node, ours_node = sg_match(sglang, [1, 2]).last_device_node, ours.match_prefix([1, 2]).node
    sglang.evict(load_sglang().EvictParams(num_tokens=2))
    ours.evict(2)
    sglang.inc_lock_ref(node)
    assert (sglang.evictable_size(), sglang.protected_size(), sglang.total_size()) == (-2, 2, 0)
    with pytest.raises(ValueError, match="not in this tree"):
        ours.lock(ours_node)
    assert (ours.evictable_size, ours.protected_size) == (0, 0)


def test_invalid_arguments_raise_where_sglang_accepts_them():
    sglang, ours = sglang_cache(), ours_cache()
    assert sglang.evict(load_sglang().EvictParams(num_tokens=-1)).num_tokens_evicted == 0
    with pytest.raises(ValueError, match="must be an integer >= 0"):
        ours.evict(-1)
    assert sg_insert(sglang, [-1, -2]) == 0 and sglang.total_size() == 2
    with pytest.raises(ValueError, match=">= 0"):
        ours_insert(ours, [-1, -2])
    with pytest.raises(ValueError, match="held by the caller"):
        ours.insert([1, 2], [5, 6])                 # pages the caller never allocated


def test_a_priority_that_is_not_a_number_raises_before_any_change():
    sg = load_sglang()
    sglang, ours = sglang_cache(), ours_cache()
    sg_insert(sglang, [1, 2, 3])
    ours_insert(ours, [1, 2, 3])
    before = sglang.root_node.last_access_time
    with pytest.raises(TypeError):                  # max(0, "high"), after stamping the root
        sglang.insert(sg.InsertParams(key=sg.RadixKey([1, 2, 9]), value=torch.arange(3), priority="high"))
    assert sglang.root_node.last_access_time != before
    clock = ours.clock
    with pytest.raises(TypeError, match="priority must be a real number"):
        ours.insert([1, 2, 9], ours.allocator.alloc(3), priority="high")
    assert ours.clock == clock and len(list(ours.nodes())) == 1
    # Agreement: None counts as 0 on both sides (SGLang's _insert_helper), numbers are compared alike.
    sglang.insert(sg.InsertParams(key=sg.RadixKey([4, 4]), value=torch.arange(2), priority=None))
    ours.insert([4, 4], ours.allocator.alloc(2), priority=None)
    assert sg_match(sglang, [4, 4]).last_device_node.priority == ours.match_prefix([4, 4]).node.priority == 0


def test_allocator_order_is_the_sorted_path_not_sglangs_default():
    """#13: SGLang frees pages straight back (paged: to the front; per token: to the back) and
    keeps slot 0 for padding unless need_sort is set; we always take the sorted path from 0."""
    from radixlib.pages import PageAllocator
    from radixlib.source import sglang_source
    allocator_module = "sglang.srt.mem_cache.allocator"
    paged_free = sglang_source(allocator_module, "PagedTokenToKVPoolAllocator.free").code
    token_free = sglang_source(allocator_module, "TokenToKVPoolAllocator.free").code
    assert "torch.cat((free_page_indices, self.free_pages))" in paged_free           # to the front
    assert "torch.cat((self.free_pages, free_index))" in token_free                  # to the back
    assert re.search(r"arange\(\s*1,", sglang_source(allocator_module, "PagedTokenToKVPoolAllocator.clear").code)
    mixin = sglang_source("sglang.srt.model_executor.model_runner_kv_cache_mixin",
                          "ModelRunnerKVCacheMixin._init_pools").code
    assert 'need_sort = self.server_args.disaggregation_mode in ("decode", "prefill")' in mixin
    allocator = PageAllocator(8, 4)
    first = allocator.alloc(3)
    allocator.free(first[:1])
    assert first == [0, 1, 2] and allocator.alloc(2) == [3, 4]           # freed page 0 waits
    assert allocator.alloc(3) == [5, 6, 7]                                # still the ready ones
    allocator.free([3])
    assert allocator.alloc(2) == [0, 3]                                   # short: merged back, sorted
