"""Property test: random operation sequences against a naive reference.

The reference keeps the set of cached page-aligned prefixes (a tuple per page boundary)
and answers matches by brute force. Eviction is policy-dependent, so after an evict the
reference checks what left instead of predicting it: only unlocked prefixes, exactly the
freed number of tokens, at least what was asked (or everything evictable).
"""
from array import array

from helpers import insert_tokens, make_cache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radixlib import POLICIES, OutOfPages
from radixlib.pages import common_prefix_len, common_prefix_len_plain


class NaiveCache:
    def __init__(self, page_size: int):
        self.ps = page_size
        self.prefixes: set[tuple] = set()      # every cached page-aligned prefix
        self.locked: list[tuple] = []          # matched prefixes currently locked

    def longest(self, tokens) -> int:
        aligned = len(tokens) - len(tokens) % self.ps
        return max((n for n in range(self.ps, aligned + 1, self.ps) if tuple(tokens[:n]) in self.prefixes),
                   default=0)

    def insert(self, tokens) -> None:
        aligned = len(tokens) - len(tokens) % self.ps
        self.prefixes.update(tuple(tokens[:n]) for n in range(self.ps, aligned + 1, self.ps))

    def protected(self) -> set[tuple]:
        return {p for p in self.prefixes if any(lk[:len(p)] == p for lk in self.locked)}

    def size(self, prefixes) -> int:
        return self.ps * len(prefixes)


def cached_prefixes(cache) -> set[tuple]:
    """Every page-aligned prefix the tree holds, read without touching it."""
    out, stack = set(), [(cache.root, ())]
    while stack:
        node, path = stack.pop()
        for child in node.children.values():
            full = path + tuple(child.key)
            out.update(full[:n] for n in range(len(path) + cache.page_size, len(full) + 1, cache.page_size))
            stack.append((child, full))
    return out


tokens_st = st.lists(st.integers(0, 3), min_size=1, max_size=14)
op_st = st.one_of(
    st.tuples(st.just("insert"), tokens_st),
    st.tuples(st.just("match"), tokens_st),
    st.tuples(st.just("lock"), tokens_st),
    st.tuples(st.just("unlock"), st.integers(0, 10)),
    st.tuples(st.just("evict"), st.integers(0, 20)),
)


def apply(cache, ref, held_nodes, op) -> None:
    kind, arg = op
    if kind == "insert":
        try:
            present = insert_tokens(cache, arg)
        except OutOfPages:
            return
        assert present == ref.longest(arg)
        ref.insert(arg)
    elif kind in ("match", "lock"):
        m = cache.match_prefix(arg)
        assert m.prefix_len == ref.longest(arg)
        assert len(m.pages) == m.prefix_len // ref.ps
        if kind == "lock":
            cache.lock(m.node)
            held_nodes.append(m.node)
            ref.locked.append(tuple(arg[:m.prefix_len]))
    elif kind == "unlock" and held_nodes:
        i = arg % len(held_nodes)
        cache.unlock(held_nodes.pop(i))
        ref.locked.pop(i)
    elif kind == "evict":
        evictable = ref.size(ref.prefixes - ref.protected())
        freed = cache.evict(arg)
        after = cached_prefixes(cache)
        gone = ref.prefixes - after
        assert after <= ref.prefixes and not gone & ref.protected()
        assert freed == ref.size(gone) and freed >= min(arg, evictable)
        ref.prefixes = after


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page_size=st.sampled_from([1, 4]), policy=st.sampled_from(sorted(POLICIES)),
       num_pages=st.integers(2, 24), ops=st.lists(op_st, max_size=40))
def test_random_operations_match_the_naive_reference(page_size, policy, num_pages, ops):
    cache = make_cache(num_pages=num_pages, page_size=page_size, eviction=policy)
    ref, held_nodes = NaiveCache(page_size), []
    for op in ops:
        apply(cache, ref, held_nodes, op)
        assert cache.total_size == ref.size(ref.prefixes)
        assert cache.protected_size == ref.size(ref.protected())
        assert cache.evictable_size + cache.protected_size == cache.total_size
        cache.check_invariants(held=[])


# ------------------------------------- the fast forms agree with the obvious ones
short_lists = st.lists(st.integers(0, 3), max_size=80)


@settings(max_examples=1500, deadline=None)
@given(a=short_lists, b=short_lists, i=st.integers(0, 90), j=st.integers(0, 90),
       kind=st.sampled_from(["list", "array"]))
def test_common_prefix_len_agrees_with_the_item_by_item_form(a, b, i, j, kind):
    a, b = (a, b) if kind == "list" else (array("Q", a), array("Q", b))
    assert common_prefix_len(a, b, i, j) == common_prefix_len_plain(a, b, i, j)


def test_common_prefix_len_finds_every_first_difference():
    """Every position of the first difference, across the doubling windows' edges (16, 48, 112, 240)."""
    for n in range(300):
        a = array("Q", range(310))
        b = array("Q", a)
        b[n] = 10 ** 6
        assert common_prefix_len(a, b) == n == common_prefix_len_plain(a, b)
        from_3 = n - 3 if n >= 3 else 307                   # a[3:] vs b[3:], lists
        assert common_prefix_len(list(a), list(b), 3, 3) == from_3
