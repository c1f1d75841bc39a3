"""radixlib: SGLang's RadixAttention rebuilt, one concept per module.

The core (standard library only):

    pages.py        PageAllocator, OutOfPages            chapter 01
    radix_cache.py  RadixCache, TreeNode, MatchResult    chapters 02, 03
    eviction.py     eviction policies as keys            chapter 03
    router.py       Router: what is cached               chapter 04
    request.py      Request, SamplingParams              chapters 04, 06
    scheduler.py    Scheduler: what runs next            chapter 06
    forward.py      ForwardRequest, the Executor contract  chapters 05, 07
    cost_model.py   CostModel: a model-free executor     chapters 06, 07
    engine.py       Engine: the whole loop               chapter 07
    replay.py       replay a stream, Belady              chapters 00, 03
    workloads.py    Mooncake trace, synthetic workloads  chapters 00, 03, 06, 07
    lab.py          CacheLab: the cache, stepped by hand chapters 02, 03

The model extra (torch, transformers): ``kv_pool.py`` (KVPool), ``executor.py``
(AttentionExecutor), ``sampling.py``, ``models.py``, ``numerics.py`` (float comparisons).
The lab extra (graphviz, matplotlib, ipywidgets): ``viz.py``, ``plots.py``, ``widgets.py``,
``source.py``. The faithful extra
(sglang): ``reference/``. Only the core's main names are imported here.
"""
from .eviction import POLICIES
from .pages import OutOfPages, PageAllocator
from .radix_cache import InvariantError, MatchResult, RadixCache, TreeNode

__all__ = ["InvariantError", "MatchResult", "OutOfPages", "PageAllocator", "POLICIES",
           "RadixCache", "TreeNode"]
