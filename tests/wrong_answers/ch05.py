import torch


def _top_left(start, num_new):
    """SDPA's is_causal: right only without a prefix."""
    return torch.ones(num_new, start + num_new, dtype=torch.bool).tril()


def _ignores_cached_keys(config, cached, total):
    """Counts the new tokens' attention only over each other, as if the cached prefix were not there."""
    from radixlib.models import prefill_flops
    return prefill_flops(config, 0, total - cached)


WRONG = {"causal_mask": _top_left, "prefill_flops": _ignores_cached_keys}
