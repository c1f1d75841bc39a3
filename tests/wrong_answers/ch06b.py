def _pre_order(cache, prompts):
    at = {}
    for i, prompt in enumerate(prompts):
        at.setdefault(cache.match_prefix(prompt).node, []).append(i)
    weight = {}
    for node, requests in at.items():
        while node is not None:
            weight[node] = weight.get(node, 0) + len(requests)
            node = node.parent
    order = []

    def visit(node):
        order.extend(at.get(node, []))
        for child in sorted([c for c in node.children.values() if c in weight], key=lambda c: -weight[c]):
            visit(child)

    visit(cache.root)
    return order


WRONG = {
    # forgets in-batch prefix caching: a plain longest-prefix-first sort
    "lpm_order": lambda prompts, prefix_lens, threshold: sorted(range(len(prompts)), key=lambda i: -prefix_lens[i]),
    # a node's own requests BEFORE its children's (pre-order)
    "dfs_weight_order": _pre_order,
}
