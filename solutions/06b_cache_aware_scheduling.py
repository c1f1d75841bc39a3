"""Solutions to chapter 06b's exercises (Cache-aware scheduling)."""


def shared_len(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def lpm_order(prompts, prefix_lens, threshold):
    """In-batch prefix caching, then longest cached prefix first."""
    last, earlier = set(), []
    for i, prompt in enumerate(prompts):
        if prefix_lens[i] > threshold:
            continue
        if any(shared_len(prompt, other) >= threshold for other in earlier):
            last.add(i)                       # an earlier request will compute this prefix
        else:
            earlier.append(prompt)
    return sorted(range(len(prompts)), key=lambda i: float("inf") if i in last else -prefix_lens[i])


def dfs_weight_order(cache, prompts):
    """Depth first from the root, heavier subtrees first; a node's requests after its children's."""
    at = {}
    for i, prompt in enumerate(prompts):                 # match all first: matching splits nodes
        at.setdefault(cache.match_prefix(prompt).node, []).append(i)
    weight = {}
    for node, requests in at.items():
        while node is not None:
            weight[node] = weight.get(node, 0) + len(requests)
            node = node.parent
    order = []

    def visit(node):
        children = [c for c in node.children.values() if c in weight]
        for child in sorted(children, key=lambda c: -weight[c]):
            visit(child)
        order.extend(at.get(node, []))

    visit(cache.root)
    return order
