from radixlib.block_hash import SEED, sha256_pickle


def _unchained(tokens, block_size, cache_salt):
    """The last block hashed on its own tokens: equal blocks after different prefixes would collide."""
    start = (len(tokens) // block_size - 1) * block_size
    extra = (("cache_salt", cache_salt),) if start == 0 and cache_salt else None
    return sha256_pickle((sha256_pickle(SEED), tuple(tokens[start: start + block_size]), extra))


def _uncapped(cached_prompts, prompt, block_size):
    """Forgets that the last token must be computed: a repeated prompt would hit whole."""
    cached = {tuple(p[:e]) for p in cached_prompts for e in range(block_size, len(p) + 1, block_size)}
    ends = [e for e in range(block_size, len(prompt) + 1, block_size)]
    return next((e - block_size for e in ends if tuple(prompt[:e]) not in cached), ends[-1] if ends else 0)


def _uncapped_order(cached_prompts, waiting, block_size):
    """Sorts by the uncapped hit: a repeated block-aligned prompt jumps ahead of one it ties with."""
    hits = [_uncapped(cached_prompts, prompt, block_size) for prompt in waiting]
    return sorted(range(len(waiting)), key=lambda i: -hits[i])


WRONG = {"prefix_hash": _unchained, "block_prefix_hit": _uncapped, "hashed_lpm_order": _uncapped_order}
