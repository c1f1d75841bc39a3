def _uncapped(cache, prompt):
    """Forgets the len-1 cap: a repeated prompt would reuse even its last token."""
    matched = cache.match_prefix(prompt).prefix_len
    if matched == 0:
        return "MISS", 0
    return ("FULL" if matched == len(prompt) - len(prompt) % cache.page_size else "PARTIAL"), matched


WRONG = {
    "admission": _uncapped,
    "finished_len": lambda prompt_len, output_len, page_size: prompt_len + output_len - 1,   # forgot whole pages
}
