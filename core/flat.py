"""Many tensors in one buffer, so that an element-wise update over all of them is one op.

An optimizer updates every parameter the same way, element by element. With the
parameters as consecutive slices of one flat tensor, `flat.add_(grads, alpha=-lr)` is a
single kernel however many layers there are, where a loop (or `torch._foreach_*` on the
CPU) launches one per tensor: with a handful of small tensors, that launch overhead is
most of an optimizer's time. The arithmetic per element is unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.lazy import torch  # imported on first use: listing plugins stays fast

if TYPE_CHECKING:
    from collections.abc import Sequence


def pack(tensors: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """One 1-D tensor whose consecutive slices are `tensors`, or None if they can't share one.

    Each tensor is moved into the buffer in place (`Tensor.set_`): the same tensor object,
    shape and values, now a view of the buffer, so every module that holds it sees the
    updates. Tensors already packed in this order are left where they are (a second
    optimizer over the same parameters shares the buffer). None, touching nothing, when
    there is nothing to pack, a tensor appears twice, or dtypes or devices differ.
    """
    if not tensors or len({id(t) for t in tensors}) != len(tensors):
        return None
    first = tensors[0]
    if any(t.dtype != first.dtype or t.device != first.device for t in tensors):
        return None
    total = sum(t.numel() for t in tensors)
    existing = _packed_buffer(tensors, total)
    if existing is not None:
        return existing
    flat = torch.empty(total, dtype=first.dtype, device=first.device)
    offset = 0
    for t in tensors:
        n = t.numel()
        flat[offset:offset + n].copy_(t.reshape(-1))
        t.set_(flat.untyped_storage(), offset, t.shape)  # now a contiguous view of `flat`
        offset += n
    return flat


def unpack(flat: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Views of `flat`, consecutive slices shaped like each of `like` (the inverse of pack)."""
    sizes = [t.numel() for t in like]
    return [part.view(t.shape) for part, t in zip(flat.split(sizes), like)]


def _packed_buffer(tensors: Sequence[torch.Tensor], total: int) -> torch.Tensor | None:
    """The flat view over `tensors` if they already fill one storage, in order, contiguously."""
    storage = tensors[0].untyped_storage()
    if storage.nbytes() != total * tensors[0].element_size():
        return None
    offset = 0
    for t in tensors:
        if (t.untyped_storage().data_ptr() != storage.data_ptr() or not t.is_contiguous()
                or t.storage_offset() != offset):
            return None
        offset += t.numel()
    return tensors[0].new_empty(0).set_(storage, 0, (total,))
