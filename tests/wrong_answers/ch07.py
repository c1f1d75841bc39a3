from radixlib.executor import AttentionExecutor, pool_for
from radixlib.forward import ForwardRequest
from radixlib.pages import PageAllocator, pages_needed, slots_of


def _positions_off_by_one(model, prompt, max_new_tokens, page_size=4):
    """Each decode step claims one token more in the pool than there is (the last token's K/V)."""
    total = len(prompt) + max_new_tokens + 1
    allocator = PageAllocator(pages_needed(total, page_size), page_size)
    executor = AttentionExecutor(model, pool_for(model, allocator.num_pages, page_size), allocator)
    slots = slots_of(allocator.alloc(allocator.num_pages), page_size, total)
    out = executor.prefill([ForwardRequest(prompt, 0, slots[: len(prompt)])])
    while len(out) < max_new_tokens:
        start = len(prompt) + len(out)
        out += executor.decode([ForwardRequest([out[-1]], start, slots[: start + 1])])
    return out


WRONG = {
    "greedy_generate": _positions_off_by_one,
    "computed_without_cache": 8 * 4 * 48,              # forgot the questions
}
