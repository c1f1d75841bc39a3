"""Solutions to chapter 00's exercises (Why prefix caching)."""
from radixlib.replay import replay
from radixlib.workloads import mooncake_prompts

prompts = mooncake_prompts(tokens_per_block=16)

# 1. An unlimited cache (more pages than the trace has distinct blocks) over the first 500 requests.
first_500_hit_rate = replay(prompts[:500], num_pages=10**5, page_size=16).hit_rate

# 2. Requests whose prompt finds nothing cached, even with unlimited room.
cold_starts = sum(cached == 0 for cached in replay(prompts, num_pages=10**5, page_size=16).prefix_lens)


# 3. Without a tree: the set of every page-aligned prefix seen so far.
def unlimited_prefix_lens(prompts, page_size):
    seen, out = set(), []
    for prompt in prompts:
        usable = (len(prompt) - 1) // page_size           # whole pages before the last token
        pages = 0
        while pages < usable and tuple(prompt[: (pages + 1) * page_size]) in seen:
            pages += 1
        out.append(pages * page_size)
        seen.update(tuple(prompt[: k * page_size]) for k in range(1, len(prompt) // page_size + 1))
    return out
