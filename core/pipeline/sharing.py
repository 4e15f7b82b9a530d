"""How the ranks of a sweep share its work (core/pipeline/multirun.py `sweep`): each takes
a consecutive share of a list, or the next unit of work that no rank has taken yet."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

from core.training.world import World

T = TypeVar("T")


def share(items: Sequence[T], world: World | None) -> list[T]:
    """This rank's consecutive share of `items` (sizes differ by at most one)."""
    if world is None:
        return list(items)
    n = len(items)
    return list(items[world.rank * n // world.size:(world.rank + 1) * n // world.size])


def claims(world: World, count: int) -> Iterator[int]:
    """The indices 0 .. count - 1 that this rank takes, each taken by exactly one rank:
    first come, first served, through an atomic counter in the group's store (reached
    before the group is joined where the launcher's store is at hand).

    Every rank must call it (once per call on every rank, in the same order, as for a
    collective): the n-th call of a process counts on key n of its own.
    """
    store = world.store()
    key = world.rendezvous.key("claims")
    while (index := store.add(key, 1) - 1) < count:
        yield index
