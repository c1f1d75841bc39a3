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


# Each prompt is 4 x 48 = 192 example tokens + a 14-token question = 206 tokens, 208 slots in pages of 16.
# Round 1 (budget 512): the first request goes in (208 < 512, 304 left), the second too (208 < 304, 96 left),
# the third does not (208 >= 96). Neither finds the examples: they reach the tree after this forward.
# Round 2: the other six find the 192 example tokens (12 whole pages) and compute their 14-token questions.
prefilled_with_budget = 2 * (4 * 48 + 14) + 6 * 14
