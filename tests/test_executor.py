"""The executor computes only the uncached tokens, yet matches a full forward of the model.

Every reference below is the same seeded model run by transformers itself (SDPA, no cache).
The pool starts full of NaN, so reading any slot that was not written poisons the logits.

Tolerances: no constant. Two computations of the same logits sum their matmuls in different
orders, and by how much that moves them depends on the CPU's kernels and the thread count, in
float32 and (less) in float64. So a float32 result is held to the arithmetic's own error
(``radixlib.numerics``): it must be as close to the float64 logits of the same weights as the
float32 reference itself is, within a slack of 2; a float64 result, to that float32 error scaled
down to float64's precision (0.0 on most machines).
"""
import copy

import pytest
import torch
from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, MistralConfig, Qwen2Config

from radixlib import executor as ex
from radixlib.executor import AttentionExecutor, pool_for
from radixlib.forward import ForwardRequest
from radixlib.models import seeded_model
from radixlib.numerics import as_accurate, float64_bound, max_difference
from radixlib.pages import PageAllocator, pages_needed

VOCAB, MAX_POS = 256, 128
NO_SPECIAL = dict(bos_token_id=None, eos_token_id=None, pad_token_id=None)
LLAMA_LIKE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=128, vocab_size=VOCAB, max_position_embeddings=MAX_POS, **NO_SPECIAL)
CONFIGS = {
    "llama": LlamaConfig(**LLAMA_LIKE),
    "qwen2": Qwen2Config(**LLAMA_LIKE),
    "mistral": MistralConfig(**LLAMA_LIKE, sliding_window=None),
    "gpt2": GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=MAX_POS, **NO_SPECIAL),
}
NUM_PAGES_OF_16 = 24   # 384 slots, whatever the page size


def random_tokens(n: int, seed: int) -> list[int]:
    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


class Rig:
    """A model driven by an executor, its untouched twin as the reference, and the pool's pages."""

    def __init__(self, arch: str, page_size: int = 1, dtype: torch.dtype = torch.float32):
        model = seeded_model(CONFIGS[arch], seed=0, dtype=dtype)
        self.reference = copy.deepcopy(model)
        self.exact = copy.deepcopy(model).to(torch.float64)    # the same weights, widened
        num_pages = NUM_PAGES_OF_16 * 16 // page_size
        self.allocator = PageAllocator(num_pages, page_size)
        self.pool = pool_for(model, num_pages, page_size)
        self.pool.k.fill_(float("nan"))
        self.pool.v.fill_(float("nan"))
        self.executor = AttentionExecutor(model, self.pool, self.allocator)

    def fresh_slots(self, n: int) -> torch.Tensor:
        """Slots of newly allocated pages for ``n`` tokens."""
        return self.pool.slot_tensor(self.allocator.alloc(pages_needed(n, self.pool.page_size)), n)

    def reference_logits(self, prompt: list[int], exact: bool = False) -> torch.Tensor:
        with torch.no_grad():
            return (self.exact if exact else self.reference)(torch.tensor([prompt]), use_cache=False).logits[0]


def assert_as_accurate(ours: torch.Tensor, reference: torch.Tensor, exact: torch.Tensor) -> None:
    assert 0 < max_difference(reference, exact)           # the bound is not vacuous
    assert as_accurate(ours, reference, exact), (max_difference(ours, exact), max_difference(reference, exact))


def mixed_batch_logits(rig: Rig) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(executor, reference, exact reference) logits at every computed position, for a miss, then
    one batch of a full hit minus one token, a partial hit and a miss. Cached lengths are page aligned."""
    base = random_tokens(49, seed=1)
    partial = base[:32] + random_tokens(13, seed=2)
    miss = random_tokens(20, seed=3)
    base_slots = rig.fresh_slots(49)
    first = ForwardRequest(base, 0, base_slots)
    batch = [ForwardRequest(base[48:], 48, torch.cat([base_slots[:48], rig.fresh_slots(1)])),
             ForwardRequest(partial[32:], 32, torch.cat([base_slots[:32], rig.fresh_slots(13)])),
             ForwardRequest(miss, 0, rig.fresh_slots(20))]
    computed = rig.executor.score([first]) + rig.executor.score(batch)
    prompts = [base, base, partial, miss]
    requests = [first, *batch]
    return [(logits, rig.reference_logits(prompt)[request.start:], rig.reference_logits(prompt, True)[request.start:])
            for logits, prompt, request in zip(computed, prompts, requests)]


def max_error(triples) -> float:
    """The largest |executor - reference| (the float32 or bfloat16 one, not the exact one)."""
    return max((ours - ref).abs().max().item() for ours, ref, _ in triples)


@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("arch", CONFIGS)
def test_prefix_reuse_equals_full_forward_in_float64_to_its_rounding(arch, page_size):
    float32_error = max(max_difference(ref, exact) for _, ref, exact in mixed_batch_logits(Rig(arch, page_size)))
    assert max_error(mixed_batch_logits(Rig(arch, page_size, dtype=torch.float64))) <= float64_bound(float32_error)


@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("arch", CONFIGS)
def test_prefix_reuse_in_float32_is_as_accurate_as_the_full_forward(arch, page_size):
    ours, reference, exact = (torch.cat(column) for column in zip(*mixed_batch_logits(Rig(arch, page_size))))
    assert_as_accurate(ours, reference, exact)


def bf16_step(x: torch.Tensor) -> torch.Tensor:
    """The spacing of bfloat16 numbers at ``x`` (8 significant bits)."""
    return torch.pow(2.0, torch.floor(torch.log2(x.float().abs())) - 7)


@pytest.mark.parametrize("arch", CONFIGS)
def test_prefix_reuse_argmax_agrees_bfloat16_where_the_reference_is_decided(arch):
    """Only where the reference's top two logits are more than one bfloat16 step apart: a closer
    pair (exact ties happen at 8 bits) may swap under any change of summation order."""
    compared = 0
    for ours, ref, _ in mixed_batch_logits(Rig(arch, page_size=16, dtype=torch.bfloat16)):
        assert ours.dtype == torch.bfloat16
        top2 = ref.float().topk(2, dim=-1).values
        decided = (top2[:, 0] - top2[:, 1]) > bf16_step(top2[:, 0])
        assert torch.equal(ours.argmax(-1)[decided], ref.argmax(-1)[decided])
        compared += int(decided.sum())
    assert compared >= 40                   # of 102 positions: the test still compares most of them


def wrong_positions(start: int, num_new: int) -> torch.Tensor:
    return torch.arange(num_new)                          # forgets the cached prefix


def top_left_mask(start: int, num_new: int) -> torch.Tensor:
    return torch.ones(num_new, start + num_new, dtype=torch.bool).tril()   # SDPA's is_causal


@pytest.mark.parametrize("arch", CONFIGS)
@pytest.mark.parametrize("name, broken", [("positions", wrong_positions), ("causal_mask", top_left_mask)])
def test_control_the_equality_test_catches_offset_bugs(arch, name, broken, monkeypatch):
    monkeypatch.setattr(ex, name, broken)
    assert max_error(mixed_batch_logits(Rig(arch, page_size=16, dtype=torch.float64))) > 1e-3


def test_logits_are_the_last_token_rows_of_score_and_prefill_picks_their_argmax():
    rig = Rig("llama")
    prompts = [random_tokens(9, seed=4), random_tokens(5, seed=5)]
    batch = [ForwardRequest(p, 0, rig.fresh_slots(len(p))) for p in prompts]
    last = rig.executor.logits(batch)
    assert last.shape == (2, VOCAB)
    for row, prompt in zip(last, prompts):
        assert_as_accurate(row, rig.reference_logits(prompt)[-1], rig.reference_logits(prompt, exact=True)[-1])
    assert rig.executor.prefill(batch) == last.argmax(-1).tolist()      # greedy by default


@pytest.mark.parametrize("arch", CONFIGS)
def test_pool_only_greedy_decode_equals_generate(arch):
    """Three prompts share a 16-token prefix (4 pages of 4); 32 greedy tokens each."""
    rig, steps = Rig(arch, page_size=4), 32
    shared = random_tokens(16, seed=6)
    prompts = [shared + random_tokens(n, seed=7 + n) for n in (3, 6, 9)]
    shared_slots = rig.fresh_slots(16)
    tables = [torch.cat([shared_slots, rig.fresh_slots(len(p) - 16 + steps)]) for p in prompts]
    first = rig.executor.prefill([ForwardRequest(prompts[0], 0, tables[0][:len(prompts[0])])])
    rest = rig.executor.prefill([ForwardRequest(p[16:], 16, t[:len(p)])
                                 for p, t in zip(prompts[1:], tables[1:])])
    outputs = [[token] for token in first + rest]
    for _ in range(steps - 1):
        batch = [ForwardRequest(out[-1:], len(p) + len(out) - 1, t[:len(p) + len(out)])
                 for p, out, t in zip(prompts, outputs, tables)]
        for out, token in zip(outputs, rig.executor.decode(batch)):
            out.append(token)
    for prompt, out in zip(prompts, outputs):
        expected = rig.reference.generate(torch.tensor([prompt]), max_new_tokens=steps, do_sample=False,
                                          pad_token_id=0)[0, len(prompt):].tolist()
        assert out == expected


def shared_prefix_decode(rig: Rig) -> list[ForwardRequest]:
    """Four prompts on one 32-token prefix, prefilled; their first decode batch (not run)."""
    shared = random_tokens(32, seed=10)
    shared_slots = rig.fresh_slots(32)
    rig.executor.prefill([ForwardRequest(shared, 0, shared_slots)])
    batch = []
    for n in (1, 4, 7, 10):
        own, slots = random_tokens(n, seed=11 + n), torch.cat([shared_slots, rig.fresh_slots(n + 1)])
        rig.executor.prefill([ForwardRequest(own, 32, slots[:32 + n])])
        batch.append(ForwardRequest([own[-1]], 32 + n, slots))
    return batch


def both_layouts(arch: str, dtype: torch.dtype, monkeypatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of one decode batch in one shared part, and in one part per request."""
    rig = Rig(arch, page_size=1, dtype=dtype)
    batch = shared_prefix_decode(rig)
    assert len(ex.pack(rig.executor.checked(batch), rig.pool).parts) == 1
    shared = rig.executor.logits(batch)
    with monkeypatch.context() as patch:
        patch.setattr(ex, "SHARED_PART_FACTOR", 0)                       # one part per request
        assert len(ex.pack(rig.executor.checked(batch), rig.pool).parts) == len(batch)
        return shared, rig.executor.logits(batch)


@pytest.mark.parametrize("arch", CONFIGS)
def test_decode_in_one_shared_part_equals_one_part_per_request(arch, monkeypatch):
    shared, per_request = both_layouts(arch, torch.float32, monkeypatch)
    _, exact = both_layouts(arch, torch.float64, monkeypatch)
    assert_as_accurate(shared, per_request, exact)


def test_control_a_shared_part_that_sees_every_slot_is_caught(monkeypatch):
    rig = Rig("llama", page_size=1)
    batch = shared_prefix_decode(rig)
    right = rig.executor.logits(batch)
    see_all = ex.shared_part
    monkeypatch.setattr(ex, "shared_part", lambda b, device: see_all(b, device)._replace(mask=None))
    assert (rig.executor.logits(batch) - right).abs().max() > 1e-3


def test_decode_without_enough_sharing_keeps_one_part_per_request():
    rig = Rig("llama", page_size=1)
    batch = [ForwardRequest([1], 9, rig.fresh_slots(10)) for _ in range(ex.SHARED_PART_FACTOR + 1)]
    assert len(ex.pack(rig.executor.checked(batch), rig.pool).parts) == len(batch)


# --- bad input: a clear error, and the pool exactly as it was --------------------------------

@pytest.fixture
def rig():
    rig = Rig("llama")
    rig.pool.k.normal_(generator=torch.Generator().manual_seed(0))
    rig.pool.v.normal_(generator=torch.Generator().manual_seed(1))
    return rig


def assert_refused(rig: Rig, batch, match: str, call: str = "prefill") -> None:
    before = rig.pool.k.clone(), rig.pool.v.clone()
    with pytest.raises(ValueError, match=match):
        getattr(rig.executor, call)(batch)
    assert torch.equal(rig.pool.k, before[0]) and torch.equal(rig.pool.v, before[1])


def good_request(rig: Rig) -> ForwardRequest:
    return ForwardRequest(random_tokens(8, seed=8), 0, rig.fresh_slots(8))


@pytest.mark.parametrize("bad_id", [VOCAB, -1])
def test_ids_outside_the_vocabulary(rig, bad_id):
    bad = ForwardRequest([1, bad_id, 2], 0, rig.fresh_slots(3))
    assert_refused(rig, [good_request(rig), bad], match="outside the vocabulary")


def test_slots_not_allocated(rig):
    never_allocated = torch.arange(rig.pool.num_slots - 3, rig.pool.num_slots)
    assert_refused(rig, [good_request(rig), ForwardRequest([1, 2, 3], 0, never_allocated)],
                   match="not allocated")


def test_slots_outside_the_pool(rig):
    assert_refused(rig, [ForwardRequest([1, 2], 0, [0, rig.pool.num_slots])], match="outside the pool")


def test_context_longer_than_the_model_maximum(rig):
    slots = rig.fresh_slots(MAX_POS + 1)
    assert_refused(rig, [good_request(rig), ForwardRequest(random_tokens(1, 9), MAX_POS, slots)],
                   match="exceeds the model's maximum")


def test_slot_count_must_match_the_context(rig):
    assert_refused(rig, [ForwardRequest([1, 2, 3], 1, rig.fresh_slots(3))], match="3 slots for 1 tokens in the pool")


def test_two_requests_writing_one_slot(rig):
    slots = rig.fresh_slots(4)
    assert_refused(rig, [ForwardRequest([1, 2], 0, slots[:2]), ForwardRequest([3, 4], 0, slots[1:3])],
                   match="two writes to one slot")


def test_a_write_over_another_requests_cached_prefix(rig):
    slots = rig.fresh_slots(4)
    assert_refused(rig, [ForwardRequest([1, 2], 2, slots), ForwardRequest([3], 0, slots[1:2])],
                   match="a write over a cached prefix slot")


def test_decode_takes_one_token_per_request(rig):
    assert_refused(rig, [good_request(rig)], match="one token per request", call="decode")


def test_empty_batch(rig):
    assert_refused(rig, [], match="empty batch")


# --- set-up errors --------------------------------------------------------------------------

def test_pool_dtype_must_follow_the_model():
    model = seeded_model(CONFIGS["llama"], dtype=torch.bfloat16)
    pool = pool_for(seeded_model(CONFIGS["llama"]), num_pages=8, page_size=4)     # float32
    with pytest.raises(TypeError, match="pool holds torch.float32 but the model computes in torch.bfloat16"):
        AttentionExecutor(model, pool)


def test_pool_shape_must_fit_the_model():
    model, other = seeded_model(CONFIGS["llama"]), seeded_model(CONFIGS["gpt2"])
    with pytest.raises(ValueError, match="the model needs"):
        AttentionExecutor(model, pool_for(other, num_pages=8, page_size=4))


def test_unsupported_architecture_is_refused():
    config = GPTNeoXConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                           intermediate_size=128, vocab_size=VOCAB)
    model = seeded_model(config)
    with pytest.raises(ValueError, match="GPTNeoXForCausalLM is not supported"):
        AttentionExecutor(model, pool_for(model, num_pages=8, page_size=4))


def test_sliding_window_caps_the_context():
    model = seeded_model(MistralConfig(**{**LLAMA_LIKE, "max_position_embeddings": 64}, sliding_window=32))
    assert AttentionExecutor(model, pool_for(model, num_pages=8, page_size=8)).max_context == 32


def test_model_called_directly_after_takeover_says_so():
    rig = Rig("llama")
    with pytest.raises(RuntimeError, match="driven by an AttentionExecutor"):
        rig.executor.model(torch.tensor([[1, 2, 3]]))
