import heapq

from radixlib.eviction import POLICIES


def _no_parents(cache, num_tokens):
    """Heaps the leaves once and forgets that a parent becomes a leaf when its last child goes."""
    key = POLICIES[cache.eviction]
    heap = [(key(n), n) for n in cache.nodes() if not n.children and n.lock_ref == 0]
    heapq.heapify(heap)
    order, freed = [], 0
    while freed < num_tokens and heap:
        _, leaf = heapq.heappop(heap)
        order.append(leaf.id)
        freed += len(leaf.key)
    return order


WRONG = {
    "policy_key": lambda policy, node: node.last_access,        # every policy as LRU
    "eviction_order": _no_parents,
    "belady_gap": 7.6,                                          # Belady counting uses that cannot hit
}
