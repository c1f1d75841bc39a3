def _set_audit(num_pages, free, tree, held):
    """Counts owners as a set per list: a page freed twice looks fine."""
    owners = [p for entries in (free, tree, held) for p in set(entries)]
    return ([p for p in range(num_pages) if p not in owners],
            sorted({p for p in owners if owners.count(p) > 1}))


def _loose_finish(page_size, kv_len, pages, prefix_len, present):
    """The loose router's finish: gives back the duplicates, forgets the partial last page."""
    return sorted(pages[prefix_len // page_size: present // page_size])


WRONG = {
    "audit_pages": _set_audit,
    "pages_to_free": _loose_finish,
    "peak_pool_pages": 768 // 32 + 32 * -(-(32 + 33) // 32),   # gives the last sampled token K/V: 3 pages each
}
