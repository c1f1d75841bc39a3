"""SGLang 0.5.12's own modules, imported from the wheel, to compare radixlib against.

``pip install --no-deps sglang==0.5.12`` gives SGLang's source without the serving
stack. The modules we compare against (the radix cache, the schedule policy, the
request and batch classes, the memory helpers, the allocator) need only torch, but
their imports reach the whole server (model configs, kernels, HTTP protocol); without
help the import fails. ``load_sglang`` registers stand-ins for exactly the modules
that make it fail, each one checked by removing it (``STAND_INS`` says why each is
safe). Everything else is SGLang's real code.

* ``sglang`` — the package ``__init__`` loads the frontend language and patches
  transformers (and needs orjson); our modules need neither, so the package is
  registered bare, its submodules still found in the wheel.
* Third-party modules missing with ``--no-deps`` (``triton``, ``orjson``, ``pybase64``,
  ``starlette``, ``torchvision``, ``msgspec``), names used at import time only: stand in
  only while importing, and only if missing (checked in a venv that ``make`` builds).
  The two triton kernels the allocator launches at run time are replaced by torch code
  that hands out the same pages (``_launch_alloc_extend``, ``_launch_alloc_decode``).

SGLang stamps nodes with ``time.monotonic()``; we replace the cache module's ``time``
with a logical clock so eviction order depends on the order of events alone, as in our
cache. ``random.shuffle`` (the "random" schedule) draws from the global ``random``
module; ``seed_random_schedule`` gives the policy module a seeded generator of its own.

``scheduler.py`` itself cannot be imported: its 63 imports reach the model runner, the
tokenizer manager and the HTTP server (an automatic stand-in for every failing import
needs 78 of them). ``load_methods`` compiles the few ``Scheduler`` methods that make
the scheduling decisions from the wheel's source files (the same code objects Python
would build; line numbers point into the wheel) for the caller to bind to a stand-in
scheduler (``scheduler_side.py``). No SGLang code is copied here.
"""
from __future__ import annotations
import __future__

import ast
import contextlib
import enum
import functools
import importlib
import importlib.metadata
import importlib.util
import itertools
import random
import sys
import time
from collections.abc import Callable, Iterator
from types import CodeType, ModuleType, SimpleNamespace
from typing import Any

import torch

from . import pinned_missing, reference_sglang

SGLANG_VERSION = reference_sglang()
RADIX_CACHE = "sglang.srt.mem_cache.radix_cache"
SCHEDULER_MODULES = {          # name in the namespace load_sglang_scheduler returns -> module
    "policy": "sglang.srt.managers.schedule_policy",
    "batch": "sglang.srt.managers.schedule_batch",
    "common": "sglang.srt.mem_cache.common",
    "chunk_cache": "sglang.srt.mem_cache.chunk_cache",
    "allocator": "sglang.srt.mem_cache.allocator",
    "sampling": "sglang.srt.sampling.sampling_params",
    "environ": "sglang.srt.environ",
    "disaggregation": "sglang.srt.disaggregation.utils",
    "time_stats": "sglang.srt.observability.req_time_stats",
}


def _types(*names: str) -> dict[str, type]:
    return {name: type(name, (), {}) for name in names}


class ForwardMode(enum.Enum):
    """Stand-in for ``forward_batch_info.ForwardMode``: the two modes a scheduler
    without speculation, DP attention or mixed chunks produces."""
    EXTEND = 1
    DECODE = 2

    def is_extend(self, include_draft_extend_v2: bool = False) -> bool:
        return self is ForwardMode.EXTEND

    def is_decode(self) -> bool:
        return self is ForwardMode.DECODE


class SamplingBatchInfo:
    """Stand-in for ``sampling_batch_info.SamplingBatchInfo``: the batch's sampling
    tensors (temperatures, penalties) for the model; it decides nothing the scheduler
    reads. Batches build, filter and merge it; decode asks whether penalties are on."""
    penalizer_orchestrator = SimpleNamespace(is_required=False)

    @classmethod
    def from_schedule_batch(cls, batch: Any, vocab_size: int) -> SamplingBatchInfo:
        return cls()

    def filter_batch(self, keep_indices: Any, keep_indices_device: Any) -> None: ...

    def merge_batch(self, other: SamplingBatchInfo) -> None: ...


SERVER_ARGS = SimpleNamespace(     # the ServerArgs fields the loaded code reads, SGLang's defaults
    page_size=1,                   # release_kv_cache: rounds an over-allocation (there is none) to pages
    speculative_algorithm=None, strip_thinking_cache=False, enable_mis=False,
    disaggregation_mode="null", disaggregation_decode_enable_offload_kvcache=False,
    nsa_prefill_cp_mode="round-robin-split",
    enable_prefill_context_parallel=False, enable_nsa_prefill_context_parallel=False,
    attention_backend="torch_native",   # write_cache_indices: its torch path (the other is a triton kernel)
    pp_max_micro_batch_size=None,       # scheduler_side gives its methods max_running_requests (scheduler.py)
    enable_mamba_extra_buffer=lambda: False,
    prefill_max_requests=None,
)

STAND_INS: dict[str, dict[str, Any]] = {   # SGLang module -> the names importers take from it
    # ServerArgs imports the model configs, parsers and LoRA registry; the loaded code
    # reads a dozen of its fields (SERVER_ARGS) through get_global_server_args().
    "sglang.srt.server_args": {**_types("ServerArgs"), "get_global_server_args": lambda: SERVER_ARGS},
    # Diffusion LLMs: a type name (off).
    "sglang.srt.dllm.config": _types("DllmConfig"),
    # GPU KV pools and the request-slot table: type names and isinstance checks. The
    # scheduler side brings its own request-slot table (scheduler_side.ReqSlots).
    "sglang.srt.mem_cache.memory_pool": _types("ReqToTokenPool", "HybridReqToTokenPool"),
    "sglang.srt.mem_cache.swa_memory_pool": _types("SWATokenToKVPoolAllocator"),
    "sglang.srt.mem_cache.hisparse_memory_pool": _types("DeepSeekV4HiSparseTokenToKVPoolAllocator"),
    # Forward batches for the model; the scheduler uses ForwardMode (above).
    "sglang.srt.model_executor.forward_batch_info": {**_types("ForwardBatch", "CaptureHiddenMode"),
                                                      "ForwardMode": ForwardMode},
    "sglang.srt.sampling.sampling_batch_info": {"SamplingBatchInfo": SamplingBatchInfo},
    # Structured output: a type name (off); the real module imports the OpenAI protocol.
    "sglang.srt.constrained.base_grammar_backend": _types("BaseGrammarObject"),
    # A constant for linear-attention (Mamba) models; the real module compiles triton kernels.
    "sglang.srt.layers.attention.fla.chunk_delta_h": {"CHUNK_SIZE": 64},
}


class _Struct:
    """Stand-in for ``msgspec.Struct``: a base class that accepts its class keywords."""

    def __init_subclass__(cls, **options):
        super().__init_subclass__()


_THIRD_PARTY_STAND_INS = {     # module -> attributes used at import time
    "triton": {"jit": lambda kernel: kernel},
    "triton.language": {"constexpr": object},
    "msgspec": {"Struct": _Struct},
    "pybase64": {},
    "orjson": {},
    "starlette.routing": {"Mount": object},
    "torchvision.io": {"decode_jpeg": None},
}


def sglang_unavailable() -> str | None:
    """Why SGLang's code cannot be compared against; ``None`` when it can."""
    return pinned_missing("sglang", SGLANG_VERSION, f"pip install --no-deps sglang=={SGLANG_VERSION}",
                          "the faithfulness tests")


@functools.cache
def load_sglang() -> ModuleType:
    """SGLang's ``radix_cache`` module, with a logical clock in place of wall time.

    Its namespace holds everything a caller needs: ``RadixCache``, ``RadixKey``,
    ``CacheInitParams``, ``MatchPrefixParams``, ``InsertParams``, ``EvictParams``.
    """
    _register_bare_package("sglang")
    for name, attributes in STAND_INS.items():
        sys.modules.setdefault(name, _module(name, attributes))
    with _third_party_stand_ins():
        radix_cache = importlib.import_module(RADIX_CACHE)
        for name in SCHEDULER_MODULES.values():
            importlib.import_module(name)
    radix_cache.time = LogicalClock()
    allocator = sys.modules[SCHEDULER_MODULES["allocator"]]
    allocator.alloc_extend_kernel = _Launcher(functools.partial(_launch_alloc_extend, allocator.alloc_extend_naive))
    allocator.alloc_decode_kernel = _Launcher(_launch_alloc_decode)
    return radix_cache


@functools.cache
def load_sglang_scheduler() -> SimpleNamespace:
    """SGLang's scheduling modules (``SCHEDULER_MODULES``), as one namespace."""
    load_sglang()
    return SimpleNamespace(**{key: sys.modules[name] for key, name in SCHEDULER_MODULES.items()})


def seed_random_schedule(seed: int) -> None:
    """Give ``schedule_policy`` its own ``random`` (what ``_sort_randomly`` shuffles with), seeded."""
    load_sglang_scheduler().policy.random = random.Random(seed)


def load_methods(relative_file: str, class_name: str, names: tuple[str, ...],
                 namespace: dict[str, Any]) -> dict[str, Callable]:
    """The methods ``names`` of class ``class_name``, compiled from the wheel's ``relative_file``.

    They run with ``namespace`` as their module globals (the names that file would have
    imported); annotations stay unevaluated, as under ``from __future__ import
    annotations``, because their types are not needed to run.
    """
    exec(_compiled_methods(relative_file, class_name, tuple(names)), namespace)
    return {name: namespace[name] for name in names}


@functools.cache
def _compiled_methods(relative_file: str, class_name: str, names: tuple[str, ...]) -> CodeType:
    """The code that defines ``load_methods``' methods, parsed and compiled once per process."""
    path = _wheel_file(relative_file)
    tree = ast.parse(path.read_text(), str(path))
    owner = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == class_name)
    methods = [node for node in owner.body if isinstance(node, ast.FunctionDef) and node.name in names]
    missing = set(names) - {m.name for m in methods}
    if missing:
        raise LookupError(f"{relative_file} has no {class_name} methods {sorted(missing)}")
    return compile(ast.Module(body=methods, type_ignores=[]), str(path), "exec",
                   flags=__future__.annotations.compiler_flag, dont_inherit=True)


def _wheel_file(relative: str):
    files = importlib.metadata.files("sglang") or []
    return next(f.locate() for f in files if str(f) == relative)


class LogicalClock:
    """Takes the place of the ``time`` module inside SGLang's ``radix_cache``:
    ``monotonic()`` counts its calls; ``perf_counter`` (eviction metrics) stays real."""

    perf_counter = staticmethod(time.perf_counter)

    def __init__(self):
        self._ticks = itertools.count(1)

    def monotonic(self) -> int:
        return next(self._ticks)


class _Launcher:
    """Stand-in for a triton kernel: ``kernel[grid](*args)`` calls ``run(*args)``."""

    def __init__(self, run: Callable[..., None]):
        self.run = run

    def __getitem__(self, grid: tuple) -> Callable[..., None]:
        return self.run


def _launch_alloc_extend(naive, prefix_lens, seq_lens, last_loc, free_pages, out_indices, bs_upper, page_size):
    """``alloc_extend_kernel``'s arguments, handed to SGLang's own torch version of it."""
    naive(prefix_lens, seq_lens, last_loc, free_pages, out_indices, page_size, out_indices.device)


def _launch_alloc_decode(seq_lens, last_loc, free_pages, out_indices, bs_upper, page_size):
    """What ``alloc_decode_kernel`` computes: a request whose new token starts a page
    takes the next free page, in batch order; the others write after their last slot.
    (Too few free pages: ``alloc_decode`` returns None, whatever was written.)"""
    new_page = (seq_lens - 1) % page_size == 0
    taken = (torch.cumsum(new_page, 0) - 1).clamp(min=0)
    pages = torch.cat([free_pages, free_pages.new_zeros(len(seq_lens))])      # never index past the end
    out_indices[:] = torch.where(new_page, pages[taken] * page_size, last_loc + 1)


def _register_bare_package(name: str) -> None:
    """Register package ``name`` without running its ``__init__``."""
    if name not in sys.modules:
        spec = importlib.util.find_spec(name)    # locates the package; does not import it
        package = ModuleType(name)
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules[name] = package


@contextlib.contextmanager
def _third_party_stand_ins() -> Iterator[None]:
    """Register the third-party stand-ins whose real module is missing, then remove them."""
    missing = [name for name in _THIRD_PARTY_STAND_INS
               if importlib.util.find_spec(name.partition(".")[0]) is None]
    for name in missing:
        sys.modules[name] = _module(name, _THIRD_PARTY_STAND_INS[name])
    try:
        yield
    finally:
        for name in missing:
            sys.modules.pop(name, None)


def _module(name: str, attributes: dict[str, Any]) -> ModuleType:
    module = ModuleType(name)
    module.__dict__.update(attributes)
    return module
