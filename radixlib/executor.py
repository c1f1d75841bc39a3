"""The executor: forward only what is not cached; every K/V goes through the shared pool.

A batch is a list of ``ForwardRequest``s. Each brings the tokens to compute now and the
slot table of its whole context. All requests are packed into ONE row, so one model
forward serves the whole batch, however different their cached prefixes::

    packed row:  [ req0 new tokens    | req1 new tokens    | req2 new token ]
    positions:   [ s0 .. s0 + T0 - 1  | s1 .. s1 + T1 - 1  | s2             ]   s_i = start_i

Every attention layer calls ``paged_attention`` (registered with transformers'
``AttentionInterface``). It first writes the row's new K/V into the pool at each
request's new slots, then, request by request, gathers the whole context's K/V
(cached prefix + new tokens) from the pool by the slot table and attends over it::

    slots_i:  [ start_i cached slots (read only) | T_i new slots (written now) ]

A decode batch whose requests share much of their context (a common prefix in the tree)
attends in ONE part instead: the row's B queries over the union of the batch's context
slots, each query masked to its own context (``shared_part``)::

    union:    [ u_0 .. u_{U-1} ]  every distinct context slot of the batch, sorted
    mask[i]:  True exactly at request i's slots          (B x U, B queries in the row)

Masked keys get no weight, so each request attends to its context as before, but the shared
prefix is gathered and read once per layer instead of once per request, and a layer issues
three ops instead of three per request.

The executor never allocates, matches or evicts: it computes over the slots it is handed,
and samples each request's next token from the last position's logits (``sampling``).
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import NamedTuple

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PreTrainedConfig, PreTrainedModel

from .forward import ForwardRequest
from .kv_pool import KVPool
from .pages import PageAllocator
from .sampling import sample

ATTENTION_NAME = "radixlib_paged"
SHARED_PART_FACTOR = 4      # one part for a decode batch while B * U <= this x the sum of its contexts
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                           "GPT2LMHeadModel")


class Part(NamedTuple):
    """A stretch of the packed row (one request, or a whole decode row), and what it may attend to."""
    start: int                   # its new tokens are row[start:end]
    end: int
    context_slots: torch.Tensor  # [L]: the K/V it attends over (L = start + T for one request)
    mask: torch.Tensor | None    # [end - start, L] bool, True = may attend; None = no mask
    is_causal: bool              # no prefix, several tokens: SDPA's own causal path, no mask


@dataclass(frozen=True)
class PackedBatch:
    """What every attention layer needs to serve a packed row; built once per forward."""
    pool: KVPool
    new_slots: torch.Tensor      # [N]: where the row's N new K/V go, in row order
    parts: list[Part]


# --- positions and masks: the two things a prefix offset changes ---------------------------

def positions(start: int, num_new: int) -> torch.Tensor:
    """Positions of the new tokens: they continue the ``start`` tokens already in the pool."""
    return torch.arange(start, start + num_new)


def causal_mask(start: int, num_new: int) -> torch.Tensor:
    """Bottom-right causal mask ``[num_new, start + num_new]``, True = may attend.

    New token i sits at position start + i and sees keys 0 .. start + i::

                     keys: [ prefix (cached) | new tokens ]
        new token 0:         1 1 1 ... 1       1 0 0 ... 0
        new token T-1:       1 1 1 ... 1       1 1 1 ... 1

    (SDPA's ``is_causal`` aligns the triangle top-left instead, which is only right
    when there is no prefix.)
    """
    return torch.ones(num_new, start + num_new, dtype=torch.bool).tril(diagonal=start)


def mask_for(request: ForwardRequest, device: torch.device) -> tuple[torch.Tensor | None, bool]:
    """(mask, is_causal) for SDPA. One new token sees its whole context: no mask at all.
    Without a prefix, top-left and bottom-right coincide: SDPA's faster built-in causal path."""
    num_new = len(request.tokens)
    if num_new == 1 or request.start == 0:
        return None, num_new > 1
    return causal_mask(request.start, num_new).to(device), False


# --- the attention function transformers calls in every layer ------------------------------

def paged_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                    value: torch.Tensor, attention_mask: torch.Tensor | None, scaling: float,
                    dropout: float = 0.0, packed_batch: PackedBatch | None = None,
                    **kwargs) -> tuple[torch.Tensor, None]:
    """Attention over the pool for a packed row of N new tokens (post-RoPE).

    ``query`` is ``[1, heads, N, head_dim]``, ``key``/``value`` ``[1, kv_heads, N, head_dim]``.
    Writes the new K/V first, so each part then reads its prefix AND its new tokens
    from the pool. Returns ``([1, N, heads, head_dim], None)`` as transformers expects.
    ``attention_mask`` is always None: transformers builds no mask for an implementation
    that has no mask function registered, and each ``Part`` brings its own.
    """
    if packed_batch is None:
        raise RuntimeError("this model is driven by an AttentionExecutor: call its prefill/decode, "
                           "or model.set_attn_implementation('sdpa') to use it directly")
    pool, layer = packed_batch.pool, module.layer_idx
    pool.write(layer, packed_batch.new_slots, key[0].transpose(0, 1), value[0].transpose(0, 1))
    outputs = [attend(pool, layer, query[:, :, part.start:part.end], part, scaling)
               for part in packed_batch.parts]
    return torch.cat(outputs, dim=2).transpose(1, 2), None


def attend(pool: KVPool, layer: int, query: torch.Tensor, part: Part, scaling: float) -> torch.Tensor:
    """One part: ``query [1, heads, T, head_dim]`` over its context K/V from the pool."""
    k, v = pool.gather(layer, part.context_slots)                # [L, kv_heads, head_dim]
    k, v = k.transpose(0, 1)[None], v.transpose(0, 1)[None]      # [1, kv_heads, L, head_dim]
    return F.scaled_dot_product_attention(query, k, v, attn_mask=part.mask, is_causal=part.is_causal,
                                          scale=scaling, enable_gqa=True)  # GQA: K/V not repeated


# --- the executor ---------------------------------------------------------------------------

class AttentionExecutor:
    """Runs packed prefill and decode forwards of ``model`` with all K/V in ``pool``.

    Takes the model over: it switches it to eval mode and to ``paged_attention``. With an
    ``allocator``, every batch's slots must lie in pages the allocator has handed out.
    Every batch is checked before the pool is touched (``checked``).

    Threads are the caller's choice (nothing here sets them). With more torch threads than
    idle cores, every mid-sized op waits at an OpenMP barrier for a descheduled thread: on
    2 cores with one busy, 2 threads made a few-shot engine run 8x slower than 1 thread
    (``benchmarks/timing.py``). On a shared machine, ``torch.set_num_threads(1)``.
    """

    def __init__(self, model: PreTrainedModel, pool: KVPool, allocator: PageAllocator | None = None):
        check_supported(model)
        check_pool_fits(model, pool)
        if allocator is not None and allocator.num_slots != pool.num_slots:
            raise ValueError(f"allocator has {allocator.num_slots} slots, pool {pool.num_slots}")
        self.model, self.pool, self.allocator = model.eval(), pool, allocator
        self.vocab_size, self.max_context = model.config.vocab_size, max_context(model.config)
        AttentionInterface.register(ATTENTION_NAME, paged_attention)
        model.set_attn_implementation(ATTENTION_NAME)

    clock = staticmethod(time.perf_counter)

    def prefill(self, batch: Sequence[ForwardRequest]) -> list[int]:
        """One packed forward over every request's new tokens; each request's next token."""
        rows = self.logits(batch)
        return [sample(row, r.params, r.rid, r.start + len(r.tokens)) for row, r in zip(rows, batch)]

    def decode(self, batch: Sequence[ForwardRequest]) -> list[int]:
        """One token per running request, one packed forward; each request's next token."""
        for i, request in enumerate(batch):
            if len(request.tokens) != 1:
                raise ValueError(f"decode takes one token per request; request {i} has {len(request.tokens)}")
        return self.prefill(batch)

    def logits(self, batch: Sequence[ForwardRequest]) -> torch.Tensor:
        """Like ``prefill``, but the logits of each request's last token, ``[B, vocab]``."""
        last = torch.tensor([end - 1 for _, end in spans(batch)])
        return self._forward(batch, keep=last)

    def score(self, batch: Sequence[ForwardRequest]) -> list[torch.Tensor]:
        """Like ``prefill``, but the logits at every new position: one ``[T_i, vocab]`` per request."""
        logits = self._forward(batch, keep=torch.arange(sum(len(r.tokens) for r in batch)))
        return list(logits.split([len(request.tokens) for request in batch]))

    @torch.inference_mode()
    def _forward(self, batch: Sequence[ForwardRequest], keep: torch.Tensor) -> torch.Tensor:
        """Check, pack, run the model once; the logits at packed-row positions ``keep``."""
        batch = self.checked(batch)
        device = self.pool.k.device
        ids = torch.tensor([t for request in batch for t in request.tokens], device=device)
        row_positions = torch.cat([positions(r.start, len(r.tokens)) for r in batch]).to(device)
        out = self.model.base_model(input_ids=ids[None], position_ids=row_positions[None], use_cache=False,
                                    packed_batch=pack(batch, self.pool))
        return logits_of(out.last_hidden_state[0, keep.to(device)], self.model.get_output_embeddings())

    def checked(self, batch: Sequence[ForwardRequest]) -> list[ForwardRequest]:
        """The batch with tokens as lists and slots as tensors; ``ValueError`` unless every
        request can run. Changes nothing, so a refused batch leaves the pool as it was."""
        if not batch:
            raise ValueError("empty batch")
        batch = [r._replace(tokens=torch.as_tensor(r.tokens, dtype=torch.long).tolist(),
                            slots=torch.as_tensor(r.slots, dtype=torch.long)) for r in batch]
        for i, request in enumerate(batch):
            check_request(request, i, self.vocab_size, self.max_context)
        slots = torch.cat([request.slots for request in batch])      # every context slot, request by request
        check_slots_in_range(batch, slots, self.pool.num_slots)
        check_writes_disjoint(batch)
        if self.allocator is not None:
            check_allocated(batch, slots, self.allocator)
        return batch


def logits_of(hidden: torch.Tensor, head: torch.nn.Linear) -> torch.Tensor:
    """``head(hidden)`` for ``hidden [M, hidden_size]``, computed as ``W @ hidden.T``.

    What each supported ``*ForCausalLM.forward`` does after its base model (transformers
    5: ``self.lm_head(hidden_states)``, no scaling), to float rounding; but with a few rows
    MKL streams the ``[vocab, hidden_size]`` weight once, where ``hidden @ W.T`` first
    repacks all of it: measured 2x faster at 2 to 8 rows (a decode batch), equal from 32.
    """
    logits = (head.weight @ hidden.T).T
    return logits if head.bias is None else logits + head.bias


def spans(batch: Sequence[ForwardRequest]) -> list[tuple[int, int]]:
    """(start, end) of each request's new tokens in the packed row."""
    ends = list(accumulate(len(request.tokens) for request in batch))
    return list(zip([0, *ends[:-1]], ends))


def pack(batch: Sequence[ForwardRequest], pool: KVPool) -> PackedBatch:
    """Lay the requests out along one row (see the module docstring)."""
    device = pool.k.device
    shared = shared_part(batch, device)
    parts = [shared] if shared is not None else request_parts(batch, device)
    new_slots = torch.cat([request.slots[request.start:] for request in batch]).to(device)
    return PackedBatch(pool, new_slots, parts)


def request_parts(batch: Sequence[ForwardRequest], device: torch.device) -> list[Part]:
    """One part per request: its new tokens over its own context."""
    return [Part(start, end, request.slots.to(device), *mask_for(request, device))
            for request, (start, end) in zip(batch, spans(batch))]


def shared_part(batch: Sequence[ForwardRequest], device: torch.device) -> Part | None:
    """One part for a whole decode row, when that is cheaper (see the module docstring).

    Its cost grows with B x U (every query against the whole union), that of one part per
    request with the sum of the contexts (each gathered and read on its own); on this CPU
    the single part is faster up to about 7x as many key reads, so it is taken up to
    ``SHARED_PART_FACTOR`` x. None for prefill, a single request, or too little sharing.
    """
    if len(batch) < 2 or any(len(request.tokens) != 1 for request in batch):
        return None
    slots = torch.cat([request.slots for request in batch])
    union, column = torch.unique(slots, return_inverse=True)     # slots[j] == union[column[j]]
    if len(batch) * len(union) > SHARED_PART_FACTOR * len(slots):
        return None
    row = torch.repeat_interleave(torch.arange(len(batch)), torch.tensor([len(r.slots) for r in batch]))
    mask = torch.zeros(len(batch), len(union), dtype=torch.bool)
    mask[row, column] = True                                     # request i sees its own slots only
    return Part(0, len(batch), union.to(device), mask.to(device), False)


# --- the model's K/V shapes ----------------------------------------------------------------

def kv_shape(config: PreTrainedConfig) -> tuple[int, int, int]:
    """(layers, kv_heads, head_dim) of a model's K/V."""
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers, kv_heads, head_dim


def pool_for(model: PreTrainedModel, num_pages: int, page_size: int) -> KVPool:
    """A pool shaped for ``model``'s K/V, in the model's dtype and on its device."""
    layers, kv_heads, head_dim = kv_shape(model.config)
    return KVPool(layers, num_pages, page_size, kv_heads, head_dim, dtype=model.dtype,
                  device=model.device)


def max_context(config: PreTrainedConfig) -> int:
    """Longest context the model handles; a sliding window caps it (we attend to all of it)."""
    window = getattr(config, "sliding_window", None) or math.inf
    return min(config.max_position_embeddings, window)


# --- checks: all run before the pool is touched ---------------------------------------------

def check_supported(model: PreTrainedModel) -> None:
    name = type(model).__name__
    if name not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"{name} is not supported; the executor runs {', '.join(SUPPORTED_ARCHITECTURES)}")


def check_pool_fits(model: PreTrainedModel, pool: KVPool) -> None:
    if pool.dtype != model.dtype:
        raise TypeError(f"pool holds {pool.dtype} but the model computes in {model.dtype}; "
                        f"build the pool with pool_for(model, ...)")
    expected = kv_shape(model.config)
    if (pool.num_layers, pool.kv_heads, pool.head_dim) != expected:
        raise ValueError(f"pool is (layers, kv_heads, head_dim) = "
                         f"{(pool.num_layers, pool.kv_heads, pool.head_dim)}, the model needs {expected}")


def check_request(request: ForwardRequest, i: int, vocab_size: int, max_len: int) -> None:
    """Tokens in the vocabulary, a slot for every token, context within the model's reach."""
    if not request.tokens:
        raise ValueError(f"request {i} has no tokens to compute")
    if min(request.tokens) < 0 or max(request.tokens) >= vocab_size:
        raise ValueError(f"request {i} has token ids outside the vocabulary 0..{vocab_size - 1}")
    context = request.start + len(request.tokens)
    if request.start < 0 or len(request.slots) != context:
        raise ValueError(f"request {i}: {len(request.slots)} slots for {request.start} tokens in the pool "
                         f"+ {len(request.tokens)} new tokens")
    if context > max_len:
        raise ValueError(f"request {i}: context of {context} tokens exceeds the model's maximum {max_len}")


def check_slots_in_range(batch: Sequence[ForwardRequest], slots: torch.Tensor, num_slots: int) -> None:
    """``slots``: every request's slots, concatenated; on a miss, name the first bad request."""
    if 0 <= int(slots.min()) and int(slots.max()) < num_slots:
        return
    i = next(i for i, r in enumerate(batch) if int(r.slots.min()) < 0 or int(r.slots.max()) >= num_slots)
    raise ValueError(f"request {i} has slots outside the pool's 0..{num_slots - 1}")


def check_writes_disjoint(batch: Sequence[ForwardRequest]) -> None:
    """No slot is written twice, and none that some request reads as its cached prefix."""
    written = torch.cat([request.slots[request.start:] for request in batch])
    read = torch.cat([request.slots[:request.start] for request in batch])
    if len(written.unique()) != len(written) or bool(torch.isin(written, read).any()):
        raise ValueError("two writes to one slot, or a write over a cached prefix slot, in this batch")


def check_allocated(batch: Sequence[ForwardRequest], slots: torch.Tensor, allocator: PageAllocator) -> None:
    """Every slot lies in an allocated page; ``slots`` as in ``check_slots_in_range``."""
    if not free_pages(slots, allocator):
        return
    for i, request in enumerate(batch):
        if free := free_pages(request.slots, allocator):
            raise ValueError(f"request {i} uses slots in pages {free}, which are not allocated")


def free_pages(slots: torch.Tensor, allocator: PageAllocator) -> list[int]:
    """The free pages that ``slots`` fall in."""
    pages = torch.unique(torch.div(slots, allocator.page_size, rounding_mode="floor")).tolist()
    return [page for page in pages if allocator.is_free(page)]
