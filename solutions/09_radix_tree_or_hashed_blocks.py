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
