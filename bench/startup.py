"""Start-up time of nn-cli against `python -c "import torch"`, as medians over repeats.

    python bench/startup.py [--repeats 15]

Runs each command as a fresh process, alternating between them so that a busy machine
slows all alike, and prints the median wall time of each and its ratio to importing
torch. The targets (issue 5): `--help` at most 0.25 of it, `list` at most 0.5.
Uses the nn-cli beside this Python (the virtualenv's), with installed plugins autoloaded
as a user would have them.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

NN_CLI = str(Path(sys.executable).with_name("nn-cli"))
COMMANDS = {
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "nn-cli --help": [NN_CLI, "--help"],
    "nn-cli list": [NN_CLI, "list"],
    "nn-cli info linear": [NN_CLI, "info", "linear"],
}
TARGETS = {"nn-cli --help": 0.25, "nn-cli list": 0.5}


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    for command in COMMANDS.values():  # warm the file cache once, untimed
        wall_time(command)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            times[name].append(wall_time(command))
    medians = {name: statistics.median(t) for name, t in times.items()}
    baseline = medians["python -c 'import torch'"]
    print(f"median of {args.repeats} runs each; ratio = time / time of importing torch")
    print(f"{'command':<28}{'median (s)':>12}{'ratio':>8}  target")
    for name, median in medians.items():
        target = TARGETS.get(name)
        verdict = "" if target is None else f"<= {target}  {'met' if median / baseline <= target else 'MISSED'}"
        print(f"{name:<28}{median:>12.3f}{median / baseline:>8.2f}  {verdict}")


if __name__ == "__main__":
    main()
