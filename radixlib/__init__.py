"""radixlib: SGLang's RadixAttention rebuilt, one concept per module.

    pages.py        PageAllocator, OutOfPages      chapter 01
    kv_pool.py      KVPool                         chapter 01, 05
    radix_cache.py  RadixCache, TreeNode           chapters 02, 03
    eviction.py     eviction policies as keys      chapter 03
    workloads.py    Mooncake trace and friends     chapters 00, 03, 06
"""
from .eviction import POLICIES
from .kv_pool import KVPool
from .pages import OutOfPages, PageAllocator
from .radix_cache import InvariantError, MatchResult, RadixCache, TreeNode

__all__ = ["InvariantError", "KVPool", "MatchResult", "OutOfPages", "PageAllocator",
           "POLICIES", "RadixCache", "TreeNode"]
