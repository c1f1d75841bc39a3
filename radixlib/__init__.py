"""radixlib: SGLang's RadixAttention rebuilt, one concept per module.

    pages.py        PageAllocator, OutOfPages            chapter 01
    kv_pool.py      KVPool                               chapters 01, 05
    radix_cache.py  RadixCache, TreeNode, MatchResult    chapters 02, 03
    eviction.py     eviction policies as keys            chapter 03
    replay.py       serve / replay a stream, Belady      chapters 00, 03
    router.py       Router: what is cached               chapter 04
    executor.py     AttentionExecutor: the paged forward chapter 05
    models.py       the embedded model, load_model       chapter 05
    scheduler.py    Scheduler: what runs next            chapter 06
    engine.py       Engine: the whole loop               chapter 07
    workloads.py    Mooncake trace, synthetic workloads  chapters 00, 03, 06, 07
    viz.py, widgets.py, figures.py                       drawings, the cache lab, README figures

Only the cache core is imported here; ``executor``, ``models`` and ``engine`` pull in
transformers, so import them from their modules.
"""
from .eviction import POLICIES
from .kv_pool import KVPool
from .pages import OutOfPages, PageAllocator
from .radix_cache import InvariantError, MatchResult, RadixCache, TreeNode

__all__ = ["InvariantError", "KVPool", "MatchResult", "OutOfPages", "PageAllocator",
           "POLICIES", "RadixCache", "TreeNode"]
