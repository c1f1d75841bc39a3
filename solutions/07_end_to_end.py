"""Solutions to chapter 07's exercises (End to end)."""
from radixlib.executor import AttentionExecutor, pool_for
from radixlib.forward import ForwardRequest
from radixlib.pages import PageAllocator, pages_needed, slots_of


def greedy_generate(model, prompt, max_new_tokens, page_size=4):
    """What the engine does for one request: pages for everything it will hold, one prefill, then
    decode steps that each start where the pool's tokens end."""
    total = len(prompt) + max_new_tokens
    allocator = PageAllocator(pages_needed(total, page_size), page_size)
    executor = AttentionExecutor(model, pool_for(model, allocator.num_pages, page_size), allocator)
    slots = slots_of(allocator.alloc(allocator.num_pages), page_size, total)
    out = executor.prefill([ForwardRequest(prompt, 0, slots[: len(prompt)])])
    while len(out) < max_new_tokens:
        start = len(prompt) + len(out) - 1                  # the last token has no K/V yet
        out += executor.decode([ForwardRequest([out[-1]], start, slots[: start + 1])])
    return out


# Every prompt in full: 8 prompts x (4 x 48 examples + a 16-token question).
computed_without_cache = 8 * (4 * 48 + 16)
