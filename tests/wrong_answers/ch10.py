WRONG = {
    # ">=" where the router has ">": a match rate exactly at the threshold counts as a hit
    "cache_aware_choice": lambda loads, rate, credited, threshold, abs_t, rel_t: (
        loads.index(min(loads)) if max(loads) - min(loads) > abs_t and max(loads) > min(loads) * rel_t
        else credited if rate >= threshold else loads.index(min(loads))),
    # counts shared characters anywhere, not a shared prefix
    "match_rate": lambda sent, text: (max((sum(a == b for a, b in zip(text, s)) for s in sent), default=0) / len(text)
                                      if text else 0.0),
}
