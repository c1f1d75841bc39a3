"""Solutions to chapter 04's exercises (The router)."""


def admission(cache, prompt):
    """The capped match: all but the last token (it must run to give the next token's logits),
    in whole pages. FULL when every whole page of those tokens was cached."""
    cap = len(prompt) - 1
    matched = cache.match_prefix(prompt[:cap]).prefix_len if cap else 0
    if matched == 0:
        return "MISS", 0
    return ("FULL" if matched == cap - cap % cache.page_size else "PARTIAL"), matched


def finished_len(prompt_len, output_len, page_size):
    """Every token with K/V: the prompt and the output but its last token, in whole pages."""
    with_kv = prompt_len + output_len - 1
    return with_kv - with_kv % page_size
