"""Beyond one process: sweeps split across ranks, and data-parallel training.

`torchrun` starts K processes and tells each its place through the environment (RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT); `World.from_env()` reads it and joins the process
group (gloo on the CPU, NCCL on CUDA). torch.distributed serves as communication only:
its collectives (all_reduce, broadcast, gather_object) move tensors and results between
processes; every gradient is still computed by the hand-written backwards.

Two ways to use K processes:
- a sweep (core/pipeline/sweep.py): the (configuration, seed) pairs are split into K consecutive shares;
  each rank trains its share, one batched ensemble per configuration where the components
  allow, and rank 0 gathers every result. A run is its seed's run wherever it trains.
- data parallel (`DataParallel`): every rank holds the same network and optimizer, takes
  its slice of each global batch, and after its backward one all_reduce over the packed
  gradient buffer (core/training/flat.py) sums the gradients, so the optimizer steps identically
  everywhere: the same training as one process on the same global batches, to rounding.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from core.errors import NNError, SettingsError
from core.training.flat import pack
from core.lazy import torch  # imported on first use

if TYPE_CHECKING:
    from core.network.protocols import Module

T = TypeVar("T")
LOOPBACK = "127.0.0.1"


class DistributedError(NNError):
    """The processes of a distributed run disagree, or one of them failed."""


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run."""

    rank: int  # 0 .. size - 1; rank 0 alone prints and writes files
    size: int  # number of processes (WORLD_SIZE)
    device: str = "cpu"  # where the collectives' tensors live: "cpu" (gloo) or "cuda" (NCCL)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "cpu", join: bool = True) -> World | None:
        """The world torchrun describes in the environment, joined; None for one process.

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
        if not join:
            return cls(int(os.environ["RANK"]), size, device)
        dist = torch.distributed
        _join(device, size)
        backend = dist.get_backend()
        world = cls(dist.get_rank(), dist.get_world_size(), "cuda" if backend == "nccl" else "cpu")
        if world.size != size:
            raise DistributedError(f"WORLD_SIZE is {size} but the process group has {world.size}")
        return world

    def join(self) -> None:
        """Join the process group, unless this process already has (`from_env(join=False)`)."""
        _join(self.device, self.size)


def _join(device: str, size: int) -> None:
    """Create this process's process group (gloo for "cpu", NCCL for "cuda"), once."""
    dist = torch.distributed
    if dist.is_initialized():
        return
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    keep_gloo_on_loopback()
    backend = "nccl" if device == "cuda" else "gloo"
    store = _group_store()
    if store is not None:
        dist.init_process_group(backend, store=store, rank=int(os.environ["RANK"]),
                                world_size=size)
    else:
        dist.init_process_group(backend)


def _group_store():
    """The store this process's group meets in, usable before the group is joined: the
    launcher's (torchrun, or rank 0 of LocalWorkers, which hosts it here) under this
    attempt's prefix. None when the processes meet through MASTER_ADDR/MASTER_PORT alone
    (init_process_group's env://): then the store comes with the group."""
    global _GROUP_STORE
    if _GROUP_STORE is None:
        if _LISTENER is not None:  # rank 0 of LocalWorkers: host the store here, as
            _host_store_of_local_workers()  # torchrun's launcher would; join as a client
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            _GROUP_STORE = _attempt_store()
    return _GROUP_STORE


_GROUP_STORE: Any = None


def _attempt_store():
    """The launcher's store, seen under a prefix of its own for this attempt.

    torchrun keeps one store for all the attempts of a job, so after a restart the keys
    the dead attempt's processes published (gloo's addresses) are still there and the new
    processes would try to connect to them (seen: "connectFullMesh failed ... Connection
    refused", or a hang). A prefix per TORCHELASTIC_RESTART_COUNT keeps attempts apart.
    """
    from datetime import timedelta

    dist = torch.distributed
    client = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                           is_master=False, timeout=timedelta(minutes=30))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"nn-scratch/attempt-{attempt}", client)


def keep_gloo_on_loopback() -> None:
    """When the rendezvous is on this machine's loopback, gloo listens there too.

    gloo otherwise binds the address its host name resolves to, reachable from outside;
    a cluster sets MASTER_ADDR to a real address (or GLOO_SOCKET_IFNAME) and is untouched.
    """
    from core.training.torchrun import is_loopback

    address = os.environ.get("MASTER_ADDR", "")
    if "GLOO_SOCKET_IFNAME" in os.environ or not is_loopback(address):
        return
    interface = loopback_interface()
    if interface is not None:
        os.environ["GLOO_SOCKET_IFNAME"] = interface


def loopback_interface() -> str | None:
    """The name of the interface holding 127.0.0.1 ("lo" on Linux, "lo0" on macOS)."""
    import socket

    names = [name for _, name in socket.if_nameindex()]
    return next((n for n in ("lo", "lo0") if n in names), None)


# --- collectives ---------------------------------------------------------------------------

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


def claims(world: World, count: int) -> Iterator[int]:
    """The indices 0 .. count - 1 that this rank takes, each taken by exactly one rank:
    first come, first served, through an atomic counter in the group's store (reached
    before the group is joined where the launcher's store is at hand).

    Every rank must call it (once per call on every rank, in the same order, as for a
    collective): the n-th call of a process counts on key n of its own.
    """
    store = _group_store()
    if store is None:  # env://: the store comes with the group
        world.join()
        # NOTE: a private torch function (there since torch 1.x), the one way to it here
        store = torch.distributed.distributed_c10d._get_default_store()
    key = f"nn-scratch/claims-{next(_CLAIM_KEYS)}"
    while (index := store.add(key, 1) - 1) < count:
        yield index


_CLAIM_KEYS = itertools.count()


def share(items: Sequence[T], world: World | None) -> list[T]:
    """This rank's consecutive share of `items` (sizes differ by at most one)."""
    if world is None:
        return list(items)
    n = len(items)
    return list(items[world.rank * n // world.size:(world.rank + 1) * n // world.size])


def part(start: int, stop: int, world: World) -> tuple[int, int]:
    """This rank's consecutive slice [lo, hi) of the global batch [start, stop)."""
    n = stop - start
    return start + world.rank * n // world.size, start + (world.rank + 1) * n // world.size


# --- data parallel ---------------------------------------------------------------------------

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


# --- launching local processes ------------------------------------------------------------------

class LocalWorkers:
    """`--workers K`: this process becomes rank 0 of K on this machine and starts the others.

    Built before torch is imported: a socket on 127.0.0.1 is bound first and the K - 1
    workers (`script`, a Python file and its arguments, run again with RANK 1 .. K-1) start
    at once, so their start-up overlaps this process's. That socket becomes the group's
    TCPStore (rank 0 joins through `World.from_env`); the workers only connect to it.
    Leaving the `with` block waits for the workers; an exception in this process stops
    them, and a worker that fails stops this process with that worker's error.
    """

    def __init__(self, workers: int, script: Sequence[str]):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise SettingsError(f"workers must be an integer >= 1, got {workers!r}")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise SettingsError("--workers starts its own processes; under torchrun drop --workers")
        self.workers, self.script = workers, list(script)
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Any] = []
        self.finished = threading.Event()

    def __enter__(self) -> LocalWorkers:
        global _LISTENER
        if self.workers == 1:
            return self
        _LISTENER = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        _LISTENER.bind((LOOPBACK, 0))
        _LISTENER.listen(128)
        place = {"WORLD_SIZE": str(self.workers), "MASTER_ADDR": LOOPBACK,
                 "MASTER_PORT": str(_LISTENER.getsockname()[1])}
        env = {k: v for k, v in os.environ.items() if k != "TORCHELASTIC_RESTART_COUNT"}
        root = str(Path(__file__).resolve().parent.parent)  # this checkout, installed or not
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        env |= place | {"TORCHELASTIC_USE_AGENT_STORE": "True", "OMP_NUM_THREADS": "1"}
        for rank in range(1, self.workers):
            log = tempfile.TemporaryFile(mode="w+")
            self.logs.append(log)
            self.procs.append(subprocess.Popen(
                [sys.executable, *self.script], stdout=subprocess.DEVNULL, stderr=log,
                env=env | {"RANK": str(rank), "LOCAL_RANK": str(rank)},
            ))
        os.environ.update(place | {"RANK": "0", "LOCAL_RANK": "0"})
        threading.Thread(target=self._watch, daemon=True).start()
        return self

    def _watch(self) -> None:
        """A worker that fails while this process waits on it in a collective would leave it
        waiting for ever: print that worker's error and end everything."""
        while not self.finished.wait(0.2):
            for rank, proc in enumerate(self.procs, start=1):
                if proc.poll() not in (None, 0):
                    print(self._last_line(rank), file=sys.stderr, flush=True)
                    self._stop()
                    os._exit(2)

    def _last_line(self, rank: int) -> str:
        log = self.logs[rank - 1]
        log.seek(0)
        lines = [line for line in log.read().splitlines() if line.strip()]
        return lines[-1] if lines else f"nn-cli: error: worker {rank} exited with status " \
                                       f"{self.procs[rank - 1].returncode}"

    def _stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            proc.wait()

    def __exit__(self, kind, error, traceback) -> None:
        global _LISTENER
        if error is not None:
            self.finished.set()
            self._stop()
        else:
            for proc in self.procs:
                proc.wait()
            self.finished.set()
        if _LISTENER is not None:
            _LISTENER.close()
            _LISTENER = None
        failed = [rank for rank, proc in enumerate(self.procs, start=1) if proc.returncode]
        if error is None and failed:
            raise DistributedError(self._last_line(failed[0]).removeprefix("nn-cli: error: "))


_LISTENER: socket.socket | None = None  # rank 0's store socket while LocalWorkers runs
_STORE: Any = None  # the store server LocalWorkers' rank 0 hosts, kept alive with the process


def _host_store_of_local_workers() -> None:
    """Serve the TCPStore of the group LocalWorkers started on its socket; every process,
    this one too, joins it as a client (TORCHELASTIC_USE_AGENT_STORE), as under torchrun."""
    from datetime import timedelta

    global _LISTENER, _STORE
    listener, _LISTENER = _LISTENER, None
    _STORE = torch.distributed.TCPStore(
        LOOPBACK, listener.getsockname()[1], int(os.environ["WORLD_SIZE"]), True,
        timedelta(minutes=30), wait_for_workers=False, master_listen_fd=listener.detach(),
    )
    os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "True"


def launch_command(workers: int, script: Sequence[str]) -> list[str]:
    """The torchrun command that starts `workers` local processes running `script`
    (a Python file and its arguments), the rendezvous on 127.0.0.1 at a free port, every
    store listening on 127.0.0.1 alone (core/training/torchrun.py)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SettingsError(f"workers must be an integer >= 1, got {workers!r}")
    return [
        sys.executable, "-m", "core.training.torchrun", "--nnodes", "1",
        "--nproc-per-node", str(workers), "--rdzv-backend", "c10d",
        "--rdzv-endpoint", f"{LOOPBACK}:0", "--max-restarts", "0", *script,
    ]
