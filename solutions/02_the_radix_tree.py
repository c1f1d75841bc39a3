"""Solutions to chapter 02's exercises (The radix tree)."""


def child_key(tokens, start, page_size):
    """A child is filed under its first token, or under its first page of tokens."""
    return tokens[start] if page_size == 1 else tuple(tokens[start: start + page_size])


def match_len(cache, tokens):
    """Walk down from the root: at each node, the child filed under the next key; count the tokens
    of its edge that agree, in whole pages; go on only if the whole edge agreed."""
    ps = cache.page_size
    tokens = list(tokens)[: len(tokens) - len(tokens) % ps]        # whole pages only
    node, matched = cache.root, 0
    while matched < len(tokens):
        child = node.children.get(child_key(tokens, matched, ps))
        if child is None:
            break
        edge = list(child.key)
        n = 0
        while n < len(edge) and matched + n < len(tokens) and edge[n] == tokens[matched + n]:
            n += 1
        n -= n % ps                                                 # a page counts only when whole
        matched += n
        if n < len(edge):
            break
        node = child
    return matched
