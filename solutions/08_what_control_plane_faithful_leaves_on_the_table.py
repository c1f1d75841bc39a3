"""Solutions to chapter 08's exercises (What control-plane faithful leaves on the table)."""
from collections import Counter


def audit_pages(num_pages, free, tree, held):
    """Every entry is one owner; a page nobody lists leaked, a page listed twice has two owners."""
    owners = Counter(free) + Counter(tree) + Counter(held)
    leaked = [page for page in range(num_pages) if owners[page] == 0]
    owned_twice = sorted(page for page, count in owners.items() if count >= 2)
    return leaked, owned_twice


def pages_to_free(page_size, kv_len, pages, prefix_len, present):
    """Two ranges go back: the pages holding tokens the tree already had when this request inserted
    (duplicates, from prefix_len to present), and the partial page past the last whole one, which the
    tree never takes. Forgetting the second is the loose router's leak."""
    whole = kv_len // page_size
    duplicates = pages[prefix_len // page_size: present // page_size]
    tail = pages[whole:]
    return sorted(duplicates + tail)


# Pages of 32 tokens, 33 new tokens. The 768 shared tokens: 24 pages, once. Each request then holds its
# 32-token question and the K/V of 32 decoded tokens (the 33rd is sampled last and never gets K/V):
# 64 tokens, exactly 2 pages. The first request runs one step ahead of the others, but it never
# holds more than 64 tokens of its own either.
peak_pool_pages = 768 // 32 + 32 * -(-(32 + 32) // 32)
