"""How the processes of one run meet: the store they share, and joining the process group.

torchrun's launcher (or rank 0 of `--workers`, core/training/launch.py) hosts a TCPStore;
every process reaches it as a client, under a prefix of its own attempt, before the group
exists (a sweep hands out work through it) and then joins the group in it. Without a
launcher's store (MASTER_ADDR/MASTER_PORT alone: init_process_group's env://), the store
comes with the group. A `Rendezvous` holds this process's side of it; its `World` owns it.
"""

from __future__ import annotations

import atexit
import os
from collections import Counter
from typing import Any

from core.lazy import torch  # imported on first use

LOOPBACK = "127.0.0.1"
# Set by LocalWorkers on rank 0: the file descriptor of the socket, already listening on
# 127.0.0.1, that rank 0 serves the group's store on (as torchrun's launcher would).
STORE_FD = "NN_SCRATCH_STORE_FD"


class Rendezvous:
    """This process's way to the others: the group's store (found once) and the group."""

    def __init__(self) -> None:
        self._store: Any = None
        self._keys: Counter[str] = Counter()  # calls of `key(name)` so far, by name

    def store(self) -> Any:
        """The store this process's group meets in, usable before the group is joined: the
        launcher's under this attempt's prefix. None when the processes meet through
        MASTER_ADDR/MASTER_PORT alone (env://): then the store comes with the group."""
        if self._store is None:
            if STORE_FD in os.environ:  # rank 0 of LocalWorkers: serve the store here
                self._store = _attempt_store(_host_store(int(os.environ.pop(STORE_FD))))
            elif os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
                self._store = _attempt_store(_client_store())
        return self._store

    def key(self, name: str) -> str:
        """A store key of its own for the n-th call with `name` in this process: every rank
        makes its calls in the same order, so the n-th calls of all ranks share it."""
        self._keys[name] += 1
        return f"nn-scratch/{name}-{self._keys[name] - 1}"

    def join(self, device: str, size: int) -> None:
        """Create this process's process group (gloo for "cpu", NCCL for "cuda"), once."""
        dist = torch.distributed
        if dist.is_initialized():
            return
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        keep_gloo_on_loopback()
        backend = "nccl" if device == "cuda" else "gloo"
        store = self.store()
        if store is not None:
            dist.init_process_group(backend, store=store, rank=int(os.environ["RANK"]),
                                    world_size=size)
        else:
            dist.init_process_group(backend)
        # NOTE: left to the end of the process, the group (the last owner of its store, once
        # the World is gone) is destroyed after the interpreter, and its store's thread can
        # abort the process ("terminate called without an active exception"; seen in 2 exits
        # of 13): destroy it while Python still runs. (nn-cli leaves by os._exit, before this.)
        atexit.register(_leave_group)

    def shared_store(self, device: str, size: int) -> Any:
        """A store every rank reaches: the launcher's, else (env://) the group's own."""
        store = self.store()
        if store is None:
            self.join(device, size)
            # NOTE: a private torch function (there since torch 1.x), the one way to it here
            store = torch.distributed.distributed_c10d._get_default_store()
        return store


def _leave_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _host_store(fd: int) -> Any:
    """Serve the group's TCPStore on the listening socket `fd` (LocalWorkers bound it to
    127.0.0.1); the store serves on a duplicate, LocalWorkers closes its own. This process
    then reaches the store through this same object, and its process group keeps it (and
    so the server) alive as long as the group lives."""
    from datetime import timedelta

    port = int(os.environ["MASTER_PORT"])
    store = torch.distributed.TCPStore(
        LOOPBACK, port, int(os.environ["WORLD_SIZE"]), True, timedelta(minutes=30),
        wait_for_workers=False, master_listen_fd=os.dup(fd),
    )
    os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "True"  # a later Rendezvous: a client of it
    return store


def _client_store() -> Any:
    """A client of the launcher's store at MASTER_ADDR:MASTER_PORT."""
    from datetime import timedelta

    return torch.distributed.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                                      is_master=False, timeout=timedelta(minutes=30))


def _attempt_store(store: Any) -> Any:
    """The launcher's store, seen under a prefix of its own for this attempt.

    torchrun keeps one store for all the attempts of a job, so after a restart the keys
    the dead attempt's processes published (gloo's addresses) are still there and the new
    processes would try to connect to them (seen: "connectFullMesh failed ... Connection
    refused", or a hang). A prefix per TORCHELASTIC_RESTART_COUNT keeps attempts apart.
    """
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return torch.distributed.PrefixStore(f"nn-scratch/attempt-{attempt}", store)


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
