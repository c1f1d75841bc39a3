import pytest
import torch

from radixlib.kv_pool import KVPool


def test_write_then_gather_roundtrip_per_layer():
    pool = KVPool(num_layers=2, num_pages=4, page_size=2, kv_heads=2, head_dim=3)
    slots = pool.slot_tensor([3, 1], num_tokens=3)          # [6, 7, 2]
    assert slots.tolist() == [6, 7, 2]
    k, v = torch.randn(3, 2, 3), torch.randn(3, 2, 3)
    pool.write(1, slots, k, v)
    gk, gv = pool.gather(1, slots)
    assert torch.equal(gk, k) and torch.equal(gv, v)
    assert pool.k[0].abs().sum() == 0                      # other layer untouched
    assert pool.k[1, [0, 1, 3, 4, 5]].abs().sum() == 0     # other slots untouched


def test_bytes_per_token_matches_model_shapes():
    # Llama-2-7B: 32 layers, 32 KV heads, head_dim 128, fp16 -> 512 KiB per token
    assert KVPool(32, 1, 1, 32, 128, torch.float16).bytes_per_token == 524288
    pool = KVPool(8, 16, 4, 4, 64, torch.float32)
    assert pool.nbytes == pool.bytes_per_token * pool.num_slots


def test_write_with_wrong_dtype_is_refused_and_changes_nothing():
    pool = KVPool(1, 2, 1, 1, 4, torch.float32)
    with pytest.raises(TypeError, match="pool holds torch.float32"):
        pool.write(0, torch.tensor([0]), torch.ones(1, 1, 4, dtype=torch.bfloat16),
                   torch.ones(1, 1, 4, dtype=torch.bfloat16))
    assert pool.k.abs().sum() == 0
