"""Solutions to chapter 03's exercises (Refcounts and eviction)."""
import heapq

from radixlib.eviction import POLICIES
from radixlib.replay import belady, replay
from radixlib.workloads import mooncake_prompts


def policy_key(policy, node):
    """The leaf with the smallest key is evicted first."""
    keys = {"lru": node.last_access, "lfu": (node.hits, node.last_access), "fifo": node.created,
            "mru": -node.last_access, "filo": -node.created, "priority": (node.priority, node.last_access),
            "slru": (node.hits >= 2, node.last_access)}
    return keys[policy]


def eviction_order(cache, num_tokens):
    """The leaf heap, without touching the tree: remaining child counts stand for the deletions."""
    key = POLICIES[cache.eviction]
    children = {id(n): len(n.children) for n in cache.nodes()}
    heap = [(key(n), n) for n in cache.nodes() if not n.children and n.lock_ref == 0]
    heapq.heapify(heap)
    order, freed = [], 0
    while freed < num_tokens and heap:
        _, leaf = heapq.heappop(heap)
        order.append(leaf.id)
        freed += len(leaf.key)
        parent = leaf.parent
        if parent is not cache.root:
            children[id(parent)] -= 1
            if children[id(parent)] == 0 and parent.lock_ref == 0:
                heapq.heappush(heap, (key(parent), parent))
    return order


prompts = mooncake_prompts(16)[:1000]
belady_gap = round(100 * (belady(prompts, 500, 16).hit_rate - replay(prompts, 500, 16, "lru").hit_rate), 1)
