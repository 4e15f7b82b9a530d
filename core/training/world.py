"""The world of a run in several processes: this process's place in it, and what all of
its processes do together (agree, take rank 0's value, check that they started the same).

`torchrun` (or `nn-cli --workers K`, core/training/launch.py) starts K processes and tells
each its place through the environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT);
`World.from_env()` reads it and joins the process group (core/training/rendezvous.py).
torch.distributed serves as communication only: its collectives move tensors and results
between processes; every gradient is still computed by the hand-written backwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.errors import NNError, SettingsError
from core.lazy import torch  # imported on first use
from core.training.rendezvous import Rendezvous

T = TypeVar("T")


class DistributedError(NNError):
    """The processes of a distributed run disagree, or one of them failed."""


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run, and its way to the others."""

    rank: int  # 0 .. size - 1; rank 0 alone prints and writes files
    size: int  # number of processes (WORLD_SIZE)
    device: str = "cpu"  # where the collectives' tensors live: "cpu" (gloo) or "cuda" (NCCL)
    # the group's store and the joining of the group: state of this process, not of a rank
    rendezvous: Rendezvous = field(default_factory=Rendezvous, compare=False, repr=False)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "cpu", join: bool = True) -> World | None:
        """The world torchrun (or `--workers`) describes in the environment, joined; None
        for one process.

        The process group is created once (gloo for "cpu", NCCL for "cuda"); a later
        call finds it and checks its size. With `join=False` the group is joined later, by
        `join()` (a sweep: its ranks take work through the store while the slower ones are
        still starting, and meet in the group only to gather the results).
        """
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return None
        if device == "cuda" and not torch.cuda.is_available():
            raise SettingsError(
                "device 'cuda' is not available here (torch finds no CUDA GPU); accepted: cpu"
            )
        rendezvous = Rendezvous()
        if not join:
            return cls(int(os.environ["RANK"]), size, device, rendezvous)
        dist = torch.distributed
        rendezvous.join(device, size)
        backend = dist.get_backend()
        world = cls(dist.get_rank(), dist.get_world_size(),
                    "cuda" if backend == "nccl" else "cpu", rendezvous)
        if world.size != size:
            raise DistributedError(f"WORLD_SIZE is {size} but the process group has {world.size}")
        return world

    def join(self) -> None:
        """Join the process group, unless this process already has (`from_env(join=False)`)."""
        self.rendezvous.join(self.device, self.size)

    def store(self) -> Any:
        """A key-value store every rank reaches (before the group is joined where the
        launcher's is at hand; else it joins the group and uses the group's)."""
        return self.rendezvous.shared_store(self.device, self.size)


# --- what every rank does together ------------------------------------------------------------

def agree(world: World, ok: bool) -> bool:
    """Whether every rank's `ok` is true (one all_reduce): all ranks get the same answer."""
    flag = torch.tensor([1 if ok else 0], dtype=torch.int64, device=world.device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item())


def from_main(world: World, value: T) -> T:
    """Rank 0's `value`, on every rank (a broadcast of one picklable object)."""
    box = [value if world.main else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def check_same_everywhere(world: World, what: str, mine: Any, describe: Callable[[Any], str]) -> None:
    """Raise on every rank unless every rank's `mine` equals rank 0's."""
    main = from_main(world, mine)
    if not agree(world, main == mine):
        raise DistributedError(
            f"{what} differs between ranks (rank 0: {describe(main)}); start every rank with "
            f"the same command and files"
        )
