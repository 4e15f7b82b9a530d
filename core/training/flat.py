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
    shape and values, now a contiguous view of the buffer, so every module that holds the
    tensor sees the updates (a module must not keep views of it made before: those stay
    behind). Tensors already packed in this order are left where they are (a second
    optimizer over the same parameters shares the buffer). None, touching nothing, when
    there is nothing to pack, a tensor appears twice, dtypes or devices differ, or a tensor
    does not own its storage alone (it is a view of something larger, say another buffer
    that an optimizer updates, or an expanded tensor): moving it would cut that link.
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
    if not all(_owns_its_storage(t) for t in tensors):
        return None
    flat = torch.empty(total, dtype=first.dtype, device=first.device)
    offset = 0
    for t in tensors:
        n = t.numel()
        part = flat[offset:offset + n].view(t.shape)
        part.copy_(t)  # element by element, whatever t's strides
        t.set_(part)  # t is now this contiguous view of `flat`
        offset += n
    return flat


def unpack(flat: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Views of `flat`, consecutive slices shaped like each of `like` (the inverse of pack)."""
    sizes = [t.numel() for t in like]
    return [part.view(t.shape) for part, t in zip(flat.split(sizes), like)]


def _owns_its_storage(t: torch.Tensor) -> bool:
    """Whether `t` covers its whole storage, each element once: a contiguous tensor or a
    permutation of one (a transpose), starting at the storage's start."""
    by_stride = sorted(range(t.dim()), key=t.stride, reverse=True)
    return (t.storage_offset() == 0 and t.permute(by_stride).is_contiguous()
            and t.untyped_storage().nbytes() == t.numel() * t.element_size())


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
