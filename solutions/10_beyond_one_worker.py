"""Solutions to chapter 10's exercises (Beyond one worker)."""


def cache_aware_choice(loads, match_rate, credited, cache_threshold, balance_abs_threshold, balance_rel_threshold):
    """Balance first (both thresholds exceeded), then affinity (strictly above the threshold),
    else the least-loaded worker; the first of equals, as Rust's min_by_key."""
    low, high = min(loads), max(loads)
    least_loaded = loads.index(low)
    if high - low > balance_abs_threshold and high > low * balance_rel_threshold:
        return least_loaded
    if match_rate > cache_threshold:
        return credited
    return least_loaded


def match_rate(sent, text):
    """The router's tree only ever answers: how far does text run along something already sent?"""
    def common(a, b):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    if not text:
        return 0.0
    return max((common(text, earlier) for earlier in sent), default=0) / len(text)
