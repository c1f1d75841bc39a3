import pytest

from radixlib import OutOfPages, PageAllocator
from radixlib.pages import page_aligned, pages_needed, slots_of


def test_alloc_gives_lowest_ready_ids_and_merges_freed_pages_when_short():
    alloc = PageAllocator(8, page_size=4)
    assert alloc.alloc(3) == [0, 1, 2]
    assert alloc.available == 5
    alloc.free([1])
    assert alloc.alloc(2) == [3, 4]            # freed pages wait while the ready list lasts
    assert alloc.alloc(4) == [1, 5, 6, 7]      # then they are merged back in, sorted
    assert alloc.allocated() == set(range(8))
    assert alloc.available == 0


def test_alloc_beyond_capacity_raises_and_changes_nothing():
    alloc = PageAllocator(4, page_size=16)
    alloc.alloc(3)
    with pytest.raises(OutOfPages, match="asked for 2 pages, only 1"):
        alloc.alloc(2)
    assert alloc.available == 1 and alloc.alloc(1) == [3]


@pytest.mark.parametrize("bad, message", [
    ([5], "double free or unknown page: page 5 is free"),
    ([0, 0], "page 0 appears twice"),
    ([99], "page id 99 is not an integer in 0..7"),
    ([1.0], "page id 1.0 is not an integer in 0..7"),
    (["a"], "page id 'a' is not an integer in 0..7"),
    ([-1], "not an integer in 0..7"),
    ([0, 5], "page 5 is free"),
])
def test_bad_free_raises_and_frees_nothing(bad, message):
    alloc = PageAllocator(8, page_size=1)
    alloc.alloc(2)
    with pytest.raises(ValueError, match=message):
        alloc.free(bad)
    assert alloc.allocated() == {0, 1}


def test_free_twice_is_a_double_free():
    alloc = PageAllocator(4)
    pages = alloc.alloc(2)
    alloc.free(pages)
    with pytest.raises(ValueError, match="double free"):
        alloc.free(pages)
    assert alloc.available == 4


def test_negative_alloc_and_bad_construction():
    with pytest.raises(ValueError):
        PageAllocator(4).alloc(-1)
    with pytest.raises(ValueError):
        PageAllocator(0, 4)
    with pytest.raises(ValueError):
        PageAllocator(4, 0)


@pytest.mark.parametrize("n, ps, needed, aligned", [
    (0, 4, 0, 0), (1, 4, 1, 0), (4, 4, 1, 4), (5, 4, 2, 4), (33, 16, 3, 32), (7, 1, 7, 7)])
def test_page_arithmetic(n, ps, needed, aligned):
    assert pages_needed(n, ps) == needed
    assert page_aligned(n, ps) == aligned


def test_slots_of_draws_the_slot_ranges():
    assert slots_of([5, 2], 4) == [20, 21, 22, 23, 8, 9, 10, 11]
    assert slots_of([5, 2], 4, num_tokens=6) == [20, 21, 22, 23, 8, 9]
    assert slots_of([3], 1) == [3]
