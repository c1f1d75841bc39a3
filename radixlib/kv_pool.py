"""KVPool: the one shared tensor store that every request's K/V lives in.

Layout is layer-major: ``k[layer]`` is ``[num_slots, kv_heads, head_dim]`` (gathers
measured 2.6x faster than slot-major here). A token's K/V sits at the same slot in
every layer, so one slot table per request serves all layers::

    k[layer]:  slot 0 | slot 1 | ... | slot num_slots-1      each [kv_heads, head_dim]

The pool knows nothing about which request or tree node owns a slot; that is the
``PageAllocator``'s and ``RadixCache``'s job.
"""
from __future__ import annotations

import torch

from .pages import slots_of


class KVPool:
    """Per-layer K and V tensors over ``num_pages * page_size`` token slots."""

    def __init__(self, num_layers: int, num_pages: int, page_size: int, kv_heads: int,
                 head_dim: int, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        self.num_layers, self.num_pages, self.page_size = num_layers, num_pages, page_size
        self.kv_heads, self.head_dim, self.dtype = kv_heads, head_dim, dtype
        shape = (num_layers, num_pages * page_size, kv_heads, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def num_slots(self) -> int:
        return self.num_pages * self.page_size

    @property
    def bytes_per_token(self) -> int:
        """K and V of one token across all layers."""
        return 2 * self.num_layers * self.kv_heads * self.head_dim * self.k.element_size()

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    def slot_tensor(self, pages: list[int], num_tokens: int | None = None) -> torch.Tensor:
        """The slot ids of ``pages`` (first ``num_tokens`` of them) as an index tensor."""
        return torch.tensor(slots_of(pages, self.page_size, num_tokens), dtype=torch.long,
                            device=self.k.device)

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store ``k, v`` ``[len(slots), kv_heads, head_dim]`` at ``slots`` of ``layer``."""
        if k.dtype != self.dtype or v.dtype != self.dtype:
            raise TypeError(f"pool holds {self.dtype}, got k {k.dtype} / v {v.dtype}")
        self.k[layer].index_copy_(0, slots, k)
        self.v[layer].index_copy_(0, slots, v)

    def gather(self, layer: int, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V of ``layer`` at ``slots``, each ``[len(slots), kv_heads, head_dim]``."""
        return self.k[layer].index_select(0, slots), self.v[layer].index_select(0, slots)

    def __repr__(self) -> str:
        return (f"KVPool(layers={self.num_layers}, pages={self.num_pages}x{self.page_size}, "
                f"kv_heads={self.kv_heads}, head_dim={self.head_dim}, dtype={self.dtype}, "
                f"{self.nbytes / 2**20:.1f} MiB)")
