"""Solutions to chapter 11's exercises (A second tier)."""


def tokens_loaded(chain, threshold, mem_quota, newly_locked):
    """The whole host-only chain, or nothing: not below the threshold, not beyond the quota
    that is left once the device ancestors are locked."""
    host_len = sum(chain)
    if host_len < threshold:
        return 0
    if mem_quota is not None and host_len > mem_quota - newly_locked:
        return 0
    return host_len


# 1000 pages x 16 tokens x 2.0 = 32,000 tokens = 2,000 pages, plus one
host_pages_for_1000 = 2001
