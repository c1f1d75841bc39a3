"""SGLang 0.5.12's scheduler, run from its own code: the reference for radixlib's ``Scheduler``.

SGLang's ``Scheduler`` can be neither imported (``sglang.py`` says why) nor built (its
constructor starts the model runner and the IPC sockets). Its scheduling methods are
plain methods over the scheduler's attributes, though, so ``SGLangScheduler`` stands in
for the scheduler *object*: it holds the attributes those methods read, set as
``Scheduler.__init__`` sets them for our server arguments, and binds SGLang's own
methods, compiled from the wheel (``METHODS``)::

    step():  batch = get_next_batch_to_run()       scheduler.py: merge the last prefill,
                                                   prefill (SchedulePolicy, PrefillAdder,
                                                   init_next_round_input) or decode
                                                   (check_decode_mem, retract_decode)
             next tokens (chosen by the caller)    the model's forward, replaced
             process_batch_result_prefill/decode   scheduler_output_processor_mixin.py:
                                                   cache_unfinished_req / release_kv_cache
             or on_idle()                          scheduler_runtime_checker_mixin.py
             last_batch = batch

Everything those methods call is SGLang's too: ``Req``, ``ScheduleBatch``
(``prepare_for_extend``/``_decode``, ``filter_batch``, ``retract_decode``), ``RadixCache``,
the token allocators and ``mem_cache/common.py``. What is ours:

* ``step``: the body of ``Scheduler.event_loop_normal``, with a model-free forward;
* ``add``: a ``Req`` built as ``handle_generate_request`` builds one (then SGLang's
  ``init_req_max_new_tokens``), queued as ``_add_request_to_queue`` queues it with
  priorities, queue limits and HiCache off;
* ``ReqSlots``: the request-slot table (``memory_pool.ReqToTokenPool``; its module cannot
  be imported), with the same members;
* the no-op housekeeping in ``HOUSEKEEPING`` (streaming output, metrics, leak checks,
  sleeping): none of it decides anything the scheduler reads.
"""
from __future__ import annotations

import logging
import time
import types
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import torch

from .sglang import SERVER_ARGS, load_methods, load_sglang, load_sglang_scheduler, seed_random_schedule

METHODS = {
    ("sglang/srt/managers/scheduler.py", "Scheduler"): (
        "get_next_batch_to_run", "get_new_batch_prefill", "_get_new_batch_prefill_raw",
        "update_running_batch", "get_num_allocatable_reqs", "stash_chunked_request",
        "init_req_max_new_tokens", "is_fully_idle", "_abort_on_waiting_timeout",
        "_abort_on_running_timeout", "_maybe_prepare_ngram_embedding"),
    ("sglang/srt/managers/scheduler_output_processor_mixin.py", "SchedulerOutputProcessorMixin"): (
        "process_batch_result_prefill", "process_batch_result_decode", "_handle_finished_req",
        "_maybe_update_reasoning_tokens", "_mamba_prefix_cache_update", "maybe_collect_routed_experts",
        "maybe_collect_indexer_topk", "maybe_collect_customized_info"),
    ("sglang/srt/managers/scheduler_runtime_checker_mixin.py", "SchedulerRuntimeCheckerMixin"): ("on_idle",),
    ("sglang/srt/managers/scheduler_dp_attn_mixin.py", "SchedulerDPAttnMixin"): ("maybe_prepare_mlp_sync_batch",),
}
HOUSEKEEPING = {              # method -> what the stand-in returns
    "stream_output": None, "report_prefill_stats": None, "report_decode_stats": None,   # to the client, metrics
    "_get_num_pending_tokens": 0,                                                      # a logged statistic
    "get_pool_stats": None, "_check_all_pools": (False, []), "_check_req_pool": None,  # idle leak checks
    "_check_tree_cache": None, "_maybe_log_idle_metrics": None, "_publish_kv_events": None,
    "reset_device_timer_window": None, "maybe_sleep_on_idle": None,
}
CONTEXT_LEN = 1 << 20          # the model's context length: never the binding limit here


class ReqSlots:
    """The request-slot table (SGLang: ``memory_pool.ReqToTokenPool``): row ``i`` holds
    the KV slots of the request with ``req_pool_idx == i``; row 0 is padding."""

    def __init__(self, size: int, max_context_len: int, device: str = "cpu"):
        self.size, self.max_context_len, self.device = size, max_context_len, device
        self.req_to_token = torch.zeros((size + 1, max_context_len), dtype=torch.int32, device=device)
        self.free_slots = list(range(1, size + 1))

    def write(self, indices, values) -> None:
        self.req_to_token[indices] = values

    def available_size(self) -> int:
        return len(self.free_slots)

    def alloc(self, reqs: list) -> list[int] | None:
        new = [r for r in reqs if r.req_pool_idx is None]       # a chunked request keeps its row
        if len(new) > len(self.free_slots):
            return None
        for r, slot in zip(new, self.free_slots):
            r.req_pool_idx = slot
        del self.free_slots[: len(new)]
        return [r.req_pool_idx for r in reqs]

    def free(self, req) -> None:
        self.free_slots.append(req.req_pool_idx)
        req.req_pool_idx = None


class NoSpeculation:
    """``SpeculativeAlgorithm.NONE``: the one member the batch and scheduler ask about."""

    @staticmethod
    def is_none() -> bool:
        return True


class SGLangScheduler:
    """SGLang's scheduler over a ``num_tokens``-slot KV pool, deciding with its own code.

    Arguments map to SGLang's server arguments: ``schedule`` = ``--schedule-policy``,
    ``max_prefill_tokens``, ``chunk_size`` = ``--chunked-prefill-size`` (None: off),
    ``max_running`` = ``--max-running-requests``, ``conservativeness`` =
    ``--schedule-conservativeness``, ``disable_radix_cache``; ``seed`` seeds the random policy.
    """

    def __init__(self, num_tokens: int, page_size: int, schedule: str = "fcfs", *,
                 max_prefill_tokens: int = 16384, chunk_size: int | None = None,
                 max_running: int = 64, conservativeness: float = 1.0, eviction: str = "lru",
                 disable_radix_cache: bool = False, seed: int = 0):
        sg = load_sglang_scheduler()
        self.sg = sg
        self.server_args = SimpleNamespace(**{**vars(SERVER_ARGS), "page_size": page_size,
                                              "pp_max_micro_batch_size": max_running})
        self._bind_methods()
        self.page_size, self.max_total_num_tokens = page_size, num_tokens
        self.max_req_len = min(CONTEXT_LEN - 1, num_tokens - 1)
        self.max_prefill_tokens, self.chunked_prefill_size = max_prefill_tokens, chunk_size
        self.max_running_requests, self.conservativeness = max_running, conservativeness
        self.req_to_token_pool = ReqSlots(max_running, CONTEXT_LEN if num_tokens > CONTEXT_LEN else num_tokens + 8)
        self.token_to_kv_pool_allocator = self._allocator(num_tokens, page_size)
        params = load_sglang().CacheInitParams(
            disable=disable_radix_cache, req_to_token_pool=self.req_to_token_pool,
            token_to_kv_pool_allocator=self.token_to_kv_pool_allocator,
            page_size=page_size, eviction_policy=eviction)
        chunks_only = disable_radix_cache and chunk_size is not None      # as Scheduler.init_cache_with_memory_pool
        self.tree_cache = (sg.chunk_cache.ChunkCache if chunks_only else load_sglang().RadixCache)(params)
        seed_random_schedule(seed)
        self.policy = sg.policy.SchedulePolicy(schedule, self.tree_cache, False, False, False)
        self._init_state()

    # ------------------------------------------------------------------ driving
    def add(self, rid: int, prompt: Sequence[int], max_new_tokens: int, stop: Sequence[int] = ()):
        """Queue a request (``handle_generate_request`` with a plain token prompt)."""
        params = self.sg.sampling.SamplingParams(max_new_tokens=max_new_tokens, stop_token_ids=list(stop) or None)
        params.normalize(None)
        req = self.sg.batch.Req(rid, "", list(prompt), params, vocab_size=1 << 30)
        req.tokenizer = None
        self.init_req_max_new_tokens(req)
        if req.sampling_params.max_new_tokens != max_new_tokens:
            raise ValueError(f"request {rid}: SGLang clips max_new_tokens to {req.sampling_params.max_new_tokens}")
        self._add_request_to_queue(req)
        return req

    def step(self, next_token: Callable[[int, int], int], on_batch: Callable[[Any], None] | None = None):
        """One iteration of ``event_loop_normal``; ``next_token(rid, position)`` is the
        model's choice for the token at ``position``; ``on_batch`` sees the batch before
        it runs. Returns the batch (None if nothing ran)."""
        batch = self.get_next_batch_to_run()
        self.cur_batch = batch
        if batch and on_batch:
            on_batch(batch)
        if batch:
            result = self._forward(batch, next_token)
            if batch.forward_mode.is_decode():
                self.process_batch_result_decode(batch, result)
            else:
                self.process_batch_result_prefill(batch, result)
        else:
            self.on_idle()
        self.last_batch = batch
        return batch

    def _forward(self, batch, next_token: Callable[[int, int], int]) -> SimpleNamespace:
        """``run_batch`` without a model: each request's next token, as a generation result."""
        positions = [len(r.origin_input_ids) + len(r.output_ids) for r in batch.reqs]
        tokens = torch.tensor([next_token(r.rid, p) for r, p in zip(batch.reqs, positions)], dtype=torch.int64)
        batch.output_ids = tokens
        return SimpleNamespace(copy_done=None, routed_experts_output=None, indexer_topk_output=None,
                               logits_output=None, next_token_ids=tokens, extend_input_len_per_req=None,
                               extend_logprob_start_len_per_req=None, can_run_cuda_graph=False,
                               num_correct_drafts=0)

    # ---------------------------------------------------------------- stand-in parts
    def _add_request_to_queue(self, req, is_retracted: bool = False) -> None:
        self.waiting_queue.append(req)
        req.time_stats.set_wait_queue_entry_time()
        if is_retracted:
            self.retracted.append(req)

    def _bind_methods(self) -> None:
        namespace = self._method_globals()
        for (path, owner), names in METHODS.items():
            for name, function in load_methods(path, owner, names, dict(namespace)).items():
                setattr(self, name, types.MethodType(function, self))
        for name, value in HOUSEKEEPING.items():
            setattr(self, name, lambda *args, value=value, **kwargs: value)

    def _method_globals(self) -> dict[str, Any]:
        """The module globals the compiled methods use, from SGLang's own modules."""
        sg = self.sg
        envs = sg.environ.envs
        return {
            "torch": torch, "time": time, "logger": logging.getLogger("sglang.srt.managers.scheduler"),
            "envs": envs, "get_global_server_args": lambda: self.server_args,
            "TEST_RETRACT": envs.SGLANG_TEST_RETRACT.get(),
            "TEST_RETRACT_INTERVAL": envs.SGLANG_TEST_RETRACT_INTERVAL.get(),
            "TEST_RETRACT_NO_PREFILL_BS": envs.SGLANG_TEST_RETRACT_NO_PREFILL_BS.get(),
            "PrefillAdder": sg.policy.PrefillAdder, "AddReqResult": sg.policy.AddReqResult,
            "ScheduleBatch": sg.batch.ScheduleBatch, "Req": sg.batch.Req, "FINISH_ABORT": sg.batch.FINISH_ABORT,
            "DisaggregationMode": sg.disaggregation.DisaggregationMode,
            "release_kv_cache": sg.common.release_kv_cache,
            "maybe_cache_unfinished_req": sg.common.maybe_cache_unfinished_req,
            "set_time_batch": sg.time_stats.set_time_batch,
            "set_schedule_time_batch": sg.time_stats.set_schedule_time_batch,
            "PrefillStats": SimpleNamespace(from_adder=lambda *args, **kwargs: None),
            "AbortReq": SimpleNamespace,
            "get_global_experts_capturer": lambda: None, "get_global_indexer_capturer": lambda: None,
        }

    def _allocator(self, num_tokens: int, page_size: int):
        allocators = self.sg.allocator
        if page_size == 1:
            return allocators.TokenToKVPoolAllocator(num_tokens, torch.int64, "cpu", None, need_sort=False)
        return allocators.PagedTokenToKVPoolAllocator(num_tokens, page_size, torch.int64, "cpu", None,
                                                      need_sort=False)

    def _init_state(self) -> None:
        """``Scheduler.__init__``'s attributes for these server arguments."""
        envs = self.sg.environ.envs
        self.waiting_queue: list = []
        self.running_batch = self.sg.batch.ScheduleBatch(reqs=[], batch_is_full=False)
        self.last_batch = self.cur_batch = self.chunked_req = None
        self._chunked_req_scheduled_last_iter = False
        self.init_new_token_ratio = min(envs.SGLANG_INIT_NEW_TOKEN_RATIO.get() * self.conservativeness, 1.0)
        self.min_new_token_ratio = min(self.init_new_token_ratio * envs.SGLANG_MIN_NEW_TOKEN_RATIO_FACTOR.get(), 1.0)
        self.new_token_ratio_decay = ((self.init_new_token_ratio - self.min_new_token_ratio)
                                      / envs.SGLANG_NEW_TOKEN_RATIO_DECAY_STEPS.get())
        self.new_token_ratio = self.init_new_token_ratio
        self.retracted: list = []
        self.model_config = SimpleNamespace(is_matryoshka=False, is_encoder_decoder=False, vocab_size=1 << 30,
                                            think_end_id=None)
        self.spec_algorithm = NoSpeculation()
        self.grammar_manager = SimpleNamespace(has_waiting_grammars=lambda: False, grammar_queue=[])
        self.dllm_manager = SimpleNamespace(any_staging_reqs=lambda: False)
        self.device = "cpu"
        self.forward_ct = self.forward_ct_decode = self.num_generated_tokens = self.max_prefill_bs = 0
        self.num_retracted_reqs = 0
        self.pp_size = 1
        self.disaggregation_mode = self.sg.disaggregation.DisaggregationMode.NULL
        for flag in ("enable_fpm", "enable_hisparse", "require_mlp_sync", "enable_hierarchical_cache",
                     "enable_priority_preemption", "enable_priority_scheduling", "is_hybrid_swa",
                     "enable_dynamic_chunking", "is_mixed_chunk", "enable_lora", "enable_hicache_storage",
                     "enable_overlap", "enable_overlap_mlx", "enable_metrics", "use_ngram_embedding",
                     "is_generation"):
            setattr(self, flag, flag == "is_generation")
        self.dllm_config = self.prefill_delayer = self.truncation_align_size = None
        self.priority_scheduling_preemption_threshold = 0
