"""torchrun whose stores listen on 127.0.0.1 only: `python -m core.training.torchrun ARGS`.

torchrun's launcher hosts TCPStores (the rendezvous's and the workers' shared one), and a
TCPStore server binds every interface whatever host it is given, reachable from outside
the machine. For a rendezvous on a loopback address this entry point hands each store
server a socket already bound to 127.0.0.1 (TCPStore's `master_listen_fd`), then runs
torchrun unchanged (`torch.distributed.run.main`). `nn-cli --workers K` and the tests
launch through it; on a cluster, plain `torchrun` with a real address is what to use.
"""

from __future__ import annotations

import ipaddress
import socket
import sys

import torch.distributed as dist

# Where torchrun's code looks TCPStore up (module, attribute); each is replaced below.
_LOOKUPS = (
    ("torch.distributed", "TCPStore"),
    ("torch.distributed.elastic.rendezvous.c10d_rendezvous_backend", "TCPStore"),
    ("torch.distributed.elastic.rendezvous.static_tcp_rendezvous", "TCPStore"),
)
_ORDER = ("host_name", "port", "world_size", "is_master", "timeout", "wait_for_workers",
          "multi_tenant", "master_listen_fd", "use_libuv")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoopbackTCPStore(dist.TCPStore):
    """A TCPStore whose server, for a loopback host, listens on 127.0.0.1 alone."""

    def __init__(self, *args, **kwargs):
        kwargs |= dict(zip(_ORDER, args))
        if (kwargs.get("is_master") and kwargs.get("master_listen_fd") is None
                and is_loopback(kwargs.get("host_name", ""))):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                listener.bind(("127.0.0.1", int(kwargs.get("port", 0))))
            except OSError as e:
                listener.close()
                # NOTE: the words and type TCPStore itself raises: torchrun then tries again
                # as a client (a second launcher on this machine) or on another port.
                raise RuntimeError("Address already in use") from e
            listener.listen(128)
            kwargs["port"] = listener.getsockname()[1]
            kwargs["master_listen_fd"] = listener.detach()  # the store owns it from here
        super().__init__(**kwargs)


def install() -> None:
    """Make torchrun's code create LoopbackTCPStores."""
    import importlib

    for module, name in _LOOKUPS:
        setattr(importlib.import_module(module), name, LoopbackTCPStore)


def main(argv: list[str] | None = None) -> None:
    install()
    from torch.distributed.run import main as torchrun

    torchrun(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
