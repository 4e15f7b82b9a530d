"""Starting the processes of one run on this machine: `--workers K`, or a torchrun command.

Nothing here imports torch: LocalWorkers starts the other processes before this one has
loaded it, so their start-up overlaps.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import SettingsError
from core.training.rendezvous import LOOPBACK, STORE_FD
from core.training.world import DistributedError


class LocalWorkers:
    """`--workers K`: this process becomes rank 0 of K on this machine and starts the others.

    Built before torch is imported: a socket on 127.0.0.1 is bound first and the K - 1
    workers (`script`, a Python file and its arguments, run again with RANK 1 .. K-1) start
    at once, so their start-up overlaps this process's. That socket becomes the group's
    TCPStore: this process's environment names it (STORE_FD) beside its RANK, and its
    `World.from_env` serves the store on it (core/training/rendezvous.py); the workers only
    connect to it. Leaving the `with` block waits for the workers; an exception in this
    process stops them, and a worker that fails stops this process with that worker's error.
    """

    def __init__(self, workers: int, script: Sequence[str]):
        check_workers(workers)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise SettingsError("--workers starts its own processes; under torchrun drop --workers")
        self.workers, self.script = workers, list(script)
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Any] = []
        self.finished = threading.Event()
        self.listener: socket.socket | None = None  # the store's socket while the workers run

    def __enter__(self) -> LocalWorkers:
        if self.workers == 1:
            return self
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((LOOPBACK, 0))
        self.listener.listen(128)
        place = {"WORLD_SIZE": str(self.workers), "MASTER_ADDR": LOOPBACK,
                 "MASTER_PORT": str(self.listener.getsockname()[1])}
        env = {k: v for k, v in os.environ.items() if k != "TORCHELASTIC_RESTART_COUNT"}
        root = str(Path(__file__).resolve().parents[2])  # this checkout, installed or not
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        env |= place | {"TORCHELASTIC_USE_AGENT_STORE": "True", "OMP_NUM_THREADS": "1"}
        for rank in range(1, self.workers):
            log = tempfile.TemporaryFile(mode="w+")
            self.logs.append(log)
            self.procs.append(subprocess.Popen(
                [sys.executable, *self.script], stdout=subprocess.DEVNULL, stderr=log,
                env=env | {"RANK": str(rank), "LOCAL_RANK": str(rank)},
            ))
        os.environ.update(place | {"RANK": "0", "LOCAL_RANK": "0",
                                   STORE_FD: str(self.listener.fileno())})
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
        if error is not None:
            self.finished.set()
            self._stop()
        else:
            for proc in self.procs:
                proc.wait()
            self.finished.set()
        if self.listener is not None:  # the store, if served, keeps a duplicate of it
            os.environ.pop(STORE_FD, None)
            self.listener.close()
            self.listener = None
        failed = [rank for rank, proc in enumerate(self.procs, start=1) if proc.returncode]
        if error is None and failed:
            raise DistributedError(self._last_line(failed[0]).removeprefix("nn-cli: error: "))


def launch_command(workers: int, script: Sequence[str]) -> list[str]:
    """The torchrun command that starts `workers` local processes running `script`
    (a Python file and its arguments), the rendezvous on 127.0.0.1 at a free port, every
    store listening on 127.0.0.1 alone (core/training/torchrun.py)."""
    check_workers(workers)
    return [
        sys.executable, "-m", "core.training.torchrun", "--nnodes", "1",
        "--nproc-per-node", str(workers), "--rdzv-backend", "c10d",
        "--rdzv-endpoint", f"{LOOPBACK}:0", "--max-restarts", "0", *script,
    ]


def check_workers(workers: Any) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SettingsError(f"workers must be an integer >= 1, got {workers!r}")
