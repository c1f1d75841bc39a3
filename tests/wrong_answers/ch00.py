WRONG = {
    "first_500_hit_rate": 0.5,
    "cold_starts": 2211,                 # without the len-1 cap: a repeated prompt would hit fully
    "unlimited_prefix_lens": lambda prompts, page_size: [      # forgets that the last token is computed
        max([k * page_size for k in range(len(p) // page_size + 1)
             if any(q[: k * page_size] == p[: k * page_size] and len(q) >= k * page_size for q in prompts[:i])]
            or [0])
        for i, p in enumerate(prompts)],
}
