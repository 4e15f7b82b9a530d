"""Data-parallel training: every rank holds the same network and optimizer, takes its slice
of each global batch, and after its backward one all_reduce over the packed gradient buffer
(core/training/flat.py) sums the gradients, so the optimizer steps identically everywhere:
the same training as one process on the same global batches, to rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.lazy import torch  # imported on first use
from core.training.flat import pack
from core.training.world import DistributedError, World, agree, check_same_everywhere

if TYPE_CHECKING:
    from core.network.protocols import Module


def part(start: int, stop: int, world: World) -> tuple[int, int]:
    """This rank's consecutive slice [lo, hi) of the global batch [start, stop)."""
    n = stop - start
    return start + world.rank * n // world.size, start + (world.rank + 1) * n // world.size


class DataParallel:
    """One rank's side of data-parallel training: its slice of each batch, the gradient sum.

    Built after the optimizer: when the optimizer packed the gradients into one buffer
    (core/training/flat.py) `pack` finds that buffer again and each step is ONE all_reduce over it;
    gradients that cannot share a buffer (mixed dtypes, views) are reduced one by one.
    A layer plugin needs nothing for this: its parameters' gradients are all there is.
    """

    def __init__(self, world: World, model: Module):
        self.world = world
        grads = [p.grad for p in model.parameters()]
        buffer = pack(grads)
        self.grads = [buffer] if buffer is not None else grads
        self.values = [p.value for p in model.parameters()]

    def part(self, start: int, stop: int) -> tuple[int, int]:
        return part(start, stop, self.world)

    def reduce(self, mine: int, batch: int) -> None:
        """Turn this rank's gradient of the mean over its `mine` samples into the global
        batch's: scale by mine / batch, then sum over ranks."""
        for grad in self.grads:
            if mine != batch:
                grad.mul_(mine / batch)
            torch.distributed.all_reduce(grad)  # sum, in place

    def total(self, value: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of `value` (each rank's summed loss of an epoch)."""
        value = value.clone()
        torch.distributed.all_reduce(value)
        return value

    def check_same_start(self, epochs_done: int) -> None:
        """Every rank must start from rank 0's weights, bit for bit, after the same number of
        epochs (a resumed run's); checked on all ranks, raised on all of them."""
        check_same_everywhere(self.world, "the number of epochs already done", epochs_done, str)
        same = True
        for value in self.values:
            theirs = value.clone()
            torch.distributed.broadcast(theirs, src=0)
            same = same and torch.equal(theirs, value)
        if not agree(self.world, same):
            raise DistributedError(
                "the network's weights differ between ranks; every rank must build it from "
                "the same settings and seed (or resume the same checkpoint)"
            )
