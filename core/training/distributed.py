"""Several processes, by concern, and the names callers import from here.

- the world (core/training/world.py): `World.from_env()`, this process's rank among the
  processes torchrun or `--workers` started, and what all ranks do together;
- the rendezvous (core/training/rendezvous.py): the store the processes meet in, joining
  the process group, gloo kept on the loopback;
- data parallelism (core/training/data_parallel.py): `DataParallel`, each rank's slice of
  a batch and one all_reduce of the packed gradients;
- launching (core/training/launch.py): `LocalWorkers` (`--workers K`), `launch_command`
  (torchrun, its stores on 127.0.0.1 by core/training/torchrun.py).
A sweep's sharing of work among ranks is a pipeline concern (core/pipeline/sharing.py,
used by `sweep` in core/pipeline/multirun.py).
"""

from core.training.data_parallel import DataParallel, part
from core.training.launch import LocalWorkers, launch_command
from core.training.rendezvous import LOOPBACK, loopback_interface
from core.training.world import DistributedError, World, agree, check_same_everywhere, from_main

__all__ = [
    "LOOPBACK", "DataParallel", "DistributedError", "LocalWorkers", "World", "agree",
    "check_same_everywhere", "from_main", "launch_command", "loopback_interface", "part",
]
