def _partial_pages(cache, tokens):
    """Counts tokens that agree inside a page that does not agree as a whole."""
    ps = cache.page_size
    node, matched = cache.root, 0
    tokens = list(tokens)
    while matched < len(tokens) - len(tokens) % ps:
        key = tokens[matched] if ps == 1 else tuple(tokens[matched: matched + ps])
        child = node.children.get(key)
        if child is None:
            break
        edge, n = list(child.key), 0
        while n < len(edge) and matched + n < len(tokens) and edge[n] == tokens[matched + n]:
            n += 1
        matched += n
        if n < len(edge):
            break
        node = child
    return matched


WRONG = {
    "child_key": lambda tokens, start, page_size: tuple(tokens[start: start + page_size]),   # a tuple at page size 1
    "match_len": _partial_pages,
}
