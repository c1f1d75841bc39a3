"""Solutions to chapter 09's exercises (Radix tree or hashed blocks)."""
import hashlib
import pickle


def _sha256(obj):
    """vLLM's default block hash: SHA-256 of the pickled object."""
    return hashlib.sha256(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)).digest()


def prefix_hash(tokens, block_size, cache_salt):
    """Each full block hashes (its parent's hash, its tokens, its extra keys), so the last one names
    the whole prefix."""
    parent = _sha256("vllm-none-hash")
    for start in range(0, len(tokens) - block_size + 1, block_size):
        extra = (("cache_salt", cache_salt),) if start == 0 and cache_salt else None
        parent = _sha256((parent, tuple(tokens[start: start + block_size]), extra))
    return parent


def block_prefix_hit(cached_prompts, prompt, block_size):
    """A block is named by its whole prefix; every full block of a served prompt is cached.
    The lookup walks the prompt's blocks (all but its last token) and stops at the first miss."""
    def blocks(tokens):
        return [tuple(tokens[:end]) for end in range(block_size, len(tokens) + 1, block_size)]

    cached = {block for p in cached_prompts for block in blocks(p)}
    hit = 0
    for block in blocks(prompt[: len(prompt) - 1]):
        if block not in cached:
            break
        hit = len(block)
    return hit


def hashed_lpm_order(cached_prompts, waiting, block_size):
    """Each waiting request keeps its block names (computed once); per step its cached prefix is the
    leading run of names found in the table, capped at len - 1 tokens. Sort longest first, stably."""
    hits = [block_prefix_hit(cached_prompts, prompt, block_size) for prompt in waiting]
    return sorted(range(len(waiting)), key=lambda i: -hits[i])


# Exercise 3: longest-prefix-first order with hashed blocks.
#
# Per waiting request the scheduler needs its cached-prefix length, recomputed every step (blocks are
# cached and evicted between steps). vLLM already keeps what that takes: each request's block hashes,
# computed once when it arrives (and once per block as decode fills it). So per request and step the
# cost is one dict probe per block, from the first, until the first miss: no hashing and no token
# comparison. The chapter's recorded timings put those probes below a tree walk of the same prompt
# (the walk costs 5.1 times the probes at 64 tokens, 1.7 times at 1,024-4,096), so sorting the queue
# this way would cost a vLLM-style scheduler no more than SGLang's walks (which make SGLang fall back to
# FCFS above 128 waiting requests).
#
# What the hashes do not give is the structure: Theorem 3.1's order is a depth-first walk of the
# requests' radix tree. Sorting by cached length alone is what lpm does, and it needs no tree. But
# dfs-weight (heavier subtrees first) and in-batch prefix caching (SGLang sorts last a waiting request
# with a short cache hit that shares 32 tokens or more with an earlier one) need to know which waiting
# requests share which blocks. Hashes give that too if the scheduler builds the structure itself: a
# dict from each block hash to the waiting requests whose chains contain it (equal hashes mean equal
# prefixes), with the parent links the chains imply, is a tree over blocks that a depth-first order can
# walk. That is extra state the scheduler must keep in step with its queue, and it works at block
# granularity only: two requests that share 15 tokens of a 16-token block share no hash.
