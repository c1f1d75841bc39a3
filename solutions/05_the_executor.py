"""Solutions to chapter 05's exercises (The executor)."""
import torch


def causal_mask(start, num_new):
    """Row i (new token i, at position start + i) sees keys 0 .. start + i: a triangle aligned bottom-right."""
    keys = torch.arange(start + num_new)
    query_positions = torch.arange(start, start + num_new)
    return keys[None, :] <= query_positions[:, None]


def prefill_flops(config, cached, total):
    """Computing tokens cached .. total - 1 of a prompt, and the last one's logits."""
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = config.hidden_size // heads
    q_dim, kv_dim, hidden = heads * head_dim, kv_heads * head_dim, config.hidden_size
    projections = hidden * (2 * q_dim + 2 * kv_dim)           # q and o: q_dim wide; k and v: kv_dim wide
    mlp = 3 * hidden * config.intermediate_size               # gate, up, down
    per_token = 2 * config.num_hidden_layers * (projections + mlp)
    keys_seen = sum(p + 1 for p in range(cached, total))      # position p attends to p + 1 keys
    attention = 2 * 2 * config.num_hidden_layers * q_dim * keys_seen   # q·k, then weights·v
    return (total - cached) * per_token + attention + 2 * hidden * config.vocab_size
