import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    ([1, 0, 1], "page 1 appears twice"),
    ([2 ** 70], "page id 1180591620717411303424 is not an integer in 0..7"),
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


@pytest.mark.parametrize("num_pages, page_size, error, match", [
    (0, 4, ValueError, "num_pages must be an integer >= 1, got 0"),
    (4, 0, ValueError, "page_size must be an integer >= 1, got 0"),
    (-2, 4, ValueError, "num_pages must be an integer >= 0, got -2"),
    (4, 2.5, TypeError, "page_size must be an integer >= 0, got 2.5"),
    ("4", 1, TypeError, "num_pages must be an integer >= 0, got '4'"),
    (None, 1, TypeError, "num_pages must be an integer >= 0, got None"),
])
def test_bad_construction_is_refused_at_once(num_pages, page_size, error, match):
    with pytest.raises(error, match=match):
        PageAllocator(num_pages, page_size)


def test_negative_alloc():
    with pytest.raises(ValueError, match="must be an integer >= 0, got -1"):
        PageAllocator(4).alloc(-1)


def test_pages_move_free_held_tree_free():
    alloc = PageAllocator(8)
    pages = alloc.alloc(4)
    assert alloc.held() == {0, 1, 2, 3} and alloc.tree_pages == 0
    assert alloc.adopt(pages[1:3]) == [1, 2]                 # the tree takes two
    assert alloc.held() == {0, 3} and alloc.tree_pages == 2 and alloc.available == 4
    with pytest.raises(ValueError, match="page 1 belongs to the radix tree"):
        alloc.free(pages)                                     # a caller cannot free the tree's
    with pytest.raises(ValueError, match="page 2 belongs to the radix tree"):
        alloc.adopt([2])                                      # nor can the tree take them twice
    assert alloc.held() == {0, 3} and alloc.tree_pages == 2
    alloc.free([0, 3])
    alloc.reclaim([1, 2])                                     # the tree's eviction
    assert alloc.available == 8 and alloc.held() == set() and alloc.allocated() == set()


def test_ownership_follows_any_order_across_allocations():
    alloc = PageAllocator(16)
    first, second = alloc.alloc(3), alloc.alloc(3)           # [0 1 2], [3 4 5]
    alloc.free([4, 1, 2, 3])                                  # runs of two leases, out of order
    assert alloc.held() == {0, 5}
    with pytest.raises(ValueError, match="page 1 is free"):
        alloc.free([5, 1])
    assert alloc.held() == {0, 5}                             # the refused call changed nothing
    third = alloc.alloc(10)                                   # 6..15: the ready list lasts
    assert third == list(range(6, 16)) and first[0] == 0 and second[2] == 5
    alloc.free([0] + third[::-1] + [5])
    assert alloc.available == 16 and alloc.alloc(16) == list(range(16))


@pytest.mark.parametrize("n, ps, needed, aligned", [
    (0, 4, 0, 0), (1, 4, 1, 0), (4, 4, 1, 4), (5, 4, 2, 4), (33, 16, 3, 32), (7, 1, 7, 7)])
def test_page_arithmetic(n, ps, needed, aligned):
    assert pages_needed(n, ps) == needed
    assert page_aligned(n, ps) == aligned


def test_slots_of_draws_the_slot_ranges():
    assert slots_of([5, 2], 4) == [20, 21, 22, 23, 8, 9, 10, 11]
    assert slots_of([5, 2], 4, num_tokens=6) == [20, 21, 22, 23, 8, 9]
    assert slots_of([3], 1) == [3]


# ------------------------------------------------- property: a naive owner model
junk = st.lists(st.one_of(st.integers(-1, 12), st.sampled_from([1.0, "a"])), max_size=6)


def draw_pages(data, owner: dict[int, str], kind: str) -> list:
    """Mostly pages of the right owner in any order (sometimes one repeated), else anything."""
    if data.draw(st.booleans()):
        return data.draw(junk)
    want = "tree" if kind == "reclaim" else "held"
    mine = data.draw(st.permutations([p for p, o in owner.items() if o == want]))
    mine = mine[: data.draw(st.integers(0, len(mine)))]
    return mine + mine[:1] if mine and data.draw(st.integers(0, 9)) == 0 else mine


def expected_error(owner: dict[int, str], pages: list) -> bool:
    """Would ``free``/``adopt`` refuse ``pages``? Both need distinct pages callers hold."""
    ok_ids = all(type(p) is int and p in owner for p in pages)
    return not (ok_ids and len(set(pages)) == len(pages) and all(owner[p] == "held" for p in pages))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_ownership_matches_a_naive_owner_map(data):
    alloc = PageAllocator(12)
    owner = dict.fromkeys(range(12), "free")
    for _ in range(data.draw(st.integers(0, 30))):
        kind = data.draw(st.sampled_from(["alloc", "free", "adopt", "reclaim"]))
        state = (alloc.held(), alloc.allocated(), alloc.available)
        if kind == "alloc":
            n = data.draw(st.integers(0, alloc.available))
            pages = alloc.alloc(n)
            assert all(owner[p] == "free" for p in pages) and len(set(pages)) == n
            owner.update(dict.fromkeys(pages, "held"))
            continue
        pages = draw_pages(data, owner, kind)
        if kind == "reclaim":                    # trusted: only the tree's own, once each
            pages = [p for p in dict.fromkeys(pages) if type(p) is int and owner.get(p) == "tree"]
            alloc.reclaim(pages)
            owner.update(dict.fromkeys(pages, "free"))
        elif expected_error(owner, pages):
            with pytest.raises(ValueError):
                getattr(alloc, kind)(pages)
            assert (alloc.held(), alloc.allocated(), alloc.available) == state
        else:
            getattr(alloc, kind)(pages)
            owner.update(dict.fromkeys(pages, "free" if kind == "free" else "tree"))
        assert alloc.held() == {p for p, o in owner.items() if o == "held"}
        assert alloc.allocated() == {p for p, o in owner.items() if o != "free"}
        assert alloc.tree_pages == sum(o == "tree" for o in owner.values())
        assert all(alloc.is_free(p) == (o == "free") for p, o in owner.items())
