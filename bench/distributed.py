"""Several processes on one machine: sweeps, data-parallel steps, and a two-"node" run.

    python bench/distributed.py                    # every section (about 10 minutes, 2 busy cores)
    python bench/distributed.py --only sweep --repeats 3
    python bench/distributed.py --only step,nodes

Sections (every process binds and connects on 127.0.0.1 only):
  sweep  `nn-cli compare --act tanh --act relu --loss bce --loss mse --runs 30` (4
         configurations x 30 seeds of the disk task) in one process against `--workers 2`,
         alternating, wall time of the whole command (start-up included); the two JSON
         outputs must be identical. Then where one process's time goes (imports, checks,
         each configuration's training, timed inside a fresh process) and the best that 2
         processes could do with whole configurations.
  step   data parallel on `digits` (scikit-learn's 8x8 images, 1797 x 64, standardised; 10
         classes as one-hot targets, MSE, plain SGD lr 0.01): an MLP 64-256-256-10 and the
         plain CNN of bench/images.py (PLAIN_CNN: two conv 3x3 + relu + maxpool, then linear)
         at global batch 64 and 512, ours (core.training.distributed.DataParallel: each rank
         its half of the batch, one all_reduce over the packed gradient buffer) beside torch.nn
         + DistributedDataParallel (gloo) from the same initial weights, same batches; K = 1
         (one process, no communication) and K = 2 launched in alternation; time per step is
         the median over repeats on rank 0.
  nodes  two launchers (`python -m core.training.torchrun --nnodes 2 --nproc-per-node 1
         --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:PORT`), each one "node", running a
         sweep and a data-parallel `nn-cli train`; their outputs against one node's
         (`--workers 2`): must be identical.
Needs scikit-learn for `step` (pip install -e '.[bench]').
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = str(ROOT / "cli.py")
SWEEP = ["compare", "--act", "tanh", "--act", "relu", "--loss", "bce", "--loss", "mse",
         "--runs", "30", "--json"]
WIDTHS = (64, 256, 256, 10)
BATCHES = (64, 512)


def env() -> dict[str, str]:
    """This environment as a user's shell has it (torch's thread defaults untouched: nn-cli
    picks its own), minus any process-group variables, plus the checkout on the path."""
    e = {k: v for k, v in os.environ.items()
         if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMP_NUM_THREADS")}
    return e | {"PYTHONPATH": str(ROOT), "NN_DISABLE_PLUGIN_AUTOLOAD": "1"}


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env(), capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return elapsed, done.stdout


# -- sweep -------------------------------------------------------------------------------------

def sweep(repeats: int) -> None:
    one_cmd = [sys.executable, CLI, *SWEEP]
    two_cmd = [*one_cmd, "--workers", "2"]
    times: dict[str, list[float]] = {"1 process": [], "2 processes": []}
    outputs: dict[str, set[str]] = {"1 process": set(), "2 processes": set()}
    for i in range(repeats):
        order = [("1 process", one_cmd), ("2 processes", two_cmd)]
        for name, command in order if i % 2 == 0 else order[::-1]:  # alternate who goes first
            elapsed, out = timed(command)
            times[name].append(elapsed)
            outputs[name].add(out)
            print(f"  {name}: {elapsed:.2f} s  (load {os.getloadavg()[0]:.1f} after)", flush=True)
    same = len(outputs["1 process"] | outputs["2 processes"]) == 1
    one, two = (statistics.median(times[k]) for k in ("1 process", "2 processes"))
    print(f"sweep 4 configurations x 30 seeds, median of {repeats} (whole command):")
    print(f"  1 process    {one:7.2f} s")
    print(f"  2 processes  {two:7.2f} s   speed-up {one / two:.2f}x   "
          f"identical JSON: {'yes' if same else 'NO'}")


def sweep_parts() -> None:
    """Where one process's sweep time goes: what `--workers 2` can split and what it cannot.

    A fresh process (as `nn-cli` would be) times its imports, the checks of the four
    configurations, and each configuration's 30 runs trained alone (one thread, as nn-cli
    trains); the bound for 2 processes is start-up + the larger half of the best split of
    whole configurations (a sweep's unit of work when there are enough of them).
    """
    _, out = timed([sys.executable, __file__, "--worker-parts"])
    found = json.loads(out.strip().splitlines()[-1])
    trains = found["train"]
    whole = found["imports"] + found["check"] + sum(trains)
    best = min(max(sum(t for i, t in enumerate(trains) if mask >> i & 1),
                   sum(t for i, t in enumerate(trains) if not mask >> i & 1))
               for mask in range(2 ** len(trains)))
    start = found["imports"] + found["check"]
    print("one process, timed inside (no interpreter start-up, no output):")
    print(f"  imports {found['imports']:.2f} s, checks {found['check']:.2f} s, training "
          + ", ".join(f"{t:.2f}" for t in trains) + f" s (tanh/bce, tanh/mse, relu/bce, "
          f"relu/mse), sum {whole:.2f} s")
    print(f"  best split of whole configurations: {best:.2f} s of {sum(trains):.2f} s; "
          f"2 processes at best {whole / (start + best):.2f}x")


def worker_parts() -> None:
    start = time.perf_counter()
    import torch

    from core import default_registry
    from core.pipeline.compare import configurations
    from core.pipeline.prepare import check
    from core.pipeline.multirun import seeds_of, train_seeds
    from core.training.settings import TrainSettings

    torch.set_num_threads(1)  # as nn-cli trains
    registry = default_registry()
    found = {"imports": time.perf_counter() - start}
    configs = configurations(TrainSettings(), {"act": ["tanh", "relu"], "loss": ["bce", "mse"]})
    start = time.perf_counter()
    for settings in configs:
        check(settings, registry, runs=30)
    found["check"] = time.perf_counter() - start
    found["train"] = []
    with torch.set_grad_enabled(False):
        for settings in configs:
            start = time.perf_counter()
            train_seeds(settings, seeds_of(settings, 30), registry)
            found["train"].append(time.perf_counter() - start)
    print(json.dumps(found), flush=True)


# -- step --------------------------------------------------------------------------------------

def networks() -> dict[str, str]:
    """The networks of `step`, by name: the issue's MLP and the plain CNN of bench/images.py."""
    from images import PLAIN_CNN

    mlp = ",".join(f"linear:out={w},relu" for w in WIDTHS[1:-1]) + f",linear:out={WIDTHS[-1]}"
    return {f"MLP {'-'.join(map(str, WIDTHS))}": mlp, "CNN (images.py PLAIN_CNN)": PLAIN_CNN}


def step(repeats: int, steps: int, rounds: int) -> None:
    results: dict[int, list[dict]] = {1: [], 2: []}
    args = ["--worker-step", "--repeats", str(repeats), "--steps", str(steps)]
    from core.training.distributed import launch_command

    for _ in range(rounds):  # K = 1 and K = 2 launched in alternation
        for k in (1, 2):
            command = ([sys.executable, __file__, *args] if k == 1
                       else launch_command(2, [__file__, *args]))
            _, out = timed(command)
            results[k].append(json.loads(out.strip().splitlines()[-1]))
    print(f"data-parallel step on digits, ms per step (median over {rounds} launches x "
          f"{repeats} repeats of {steps} steps):")
    print(f"  {'network':<26} {'batch':>5}  {'side':<10} {'K=1':>8} {'K=2':>8} {'K=2 - K=1':>10}")
    for net in networks():
        for batch in BATCHES:
            for side in ("ours", "torch DDP"):
                key = f"{net}|{side}|{batch}"
                per_k = {k: statistics.median(t for r in results[k] for t in r[key])
                         for k in (1, 2)}
                print(f"  {net:<26} {batch:>5}  {side:<10} {per_k[1]:8.3f} {per_k[2]:8.3f} "
                      f"{per_k[2] - per_k[1]:+10.3f}")
    for name in (k for k in results[2][0] if k.startswith("all_reduce")):
        alone = statistics.median(t for r in results[2] for t in r[name])
        print(f"  K=2 {name} float32 numbers alone: {alone:.3f} ms (median)")


def worker_step(repeats: int, steps: int) -> None:
    """One process's side of `step`: for each network both implementations, alternating,
    on its rank's slices. torch.nn's twin starts from our initial weights (bench/images.py)."""
    import torch
    import torch.nn.functional as F
    from images import torch_twin
    from sklearn.datasets import load_digits

    from core import default_registry, no_input_grad
    from core.network.assemble import build_flat_stack
    from core.network.stack import parse_layers
    from core.training.distributed import DataParallel, World, part

    torch.set_num_threads(1)
    world = World.from_env()
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)  # (1797, 64)
    y = F.one_hot(torch.tensor(digits.target), 10).float()  # (1797, 10)
    registry = default_registry()
    loss = registry.create("loss", "mse")
    found: dict[str, list[float]] = {}

    def sync() -> None:
        if world is not None:
            torch.distributed.barrier()

    def batches(batch: int):
        for i in range(steps):
            start = (i * batch) % (len(x) - batch)
            lo, hi = (start, start + batch) if world is None else part(start, start + batch, world)
            yield x[lo:hi], y[lo:hi], hi - lo, batch

    for net, text in networks().items():
        ours = build_flat_stack(registry, parse_layers(text, registry), (1, 8, 8), init="he",
                                generator=torch.Generator().manual_seed(0), dtype=torch.float32)
        optimizer = registry.create("optimizer", "sgd", parameters=ours.parameters(), lr=0.01)
        shard = None if world is None else DataParallel(world, ours)
        twin = torch_twin(ours)  # the same weights
        shape = ours.input_shape or (x.shape[1],)  # the CNN's twin takes images, (n, 1, 8, 8)
        theirs = twin if world is None else torch.nn.parallel.DistributedDataParallel(twin)
        torch_opt = torch.optim.SGD(theirs.parameters(), lr=0.01)

        def run_ours(batch: int) -> None:
            with torch.no_grad(), no_input_grad(ours):  # as the training loop runs it
                for xb, yb, mine, total in batches(batch):
                    optimizer.zero_grad()
                    loss.forward(ours.forward(xb), yb)
                    ours.backward(loss.backward())
                    if shard is not None:
                        shard.reduce(mine, total)
                    optimizer.step()

        def run_torch(batch: int) -> None:
            for xb, yb, _, _ in batches(batch):
                torch_opt.zero_grad()
                # DDP averages the gradients over ranks
                F.mse_loss(theirs(xb.view(-1, *shape)).flatten(1), yb).backward()
                torch_opt.step()

        for batch in BATCHES:  # one warm-up pass each
            run_ours(batch), run_torch(batch)
        for r in range(repeats):
            for batch in BATCHES:
                sides = [("ours", run_ours), ("torch DDP", run_torch)]
                for name, run in sides if r % 2 == 0 else sides[::-1]:
                    sync()
                    start = time.perf_counter()
                    run(batch)
                    sync()
                    per_step = (time.perf_counter() - start) / steps * 1e3
                    found.setdefault(f"{net}|{name}|{batch}", []).append(per_step)
        if world is not None:  # the all_reduce alone: 1 number (latency) and the whole buffer
            for n in (1, shard.grads[0].numel()):
                buffer = torch.zeros(n)
                times = []
                for _ in range(repeats * 20):
                    sync()
                    start = time.perf_counter()
                    torch.distributed.all_reduce(buffer)
                    times.append((time.perf_counter() - start) * 1e3)
                found[f"all_reduce {n}"] = [statistics.median(times)]
    if world is None or world.main:
        print(json.dumps(found), flush=True)


# -- nodes -------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(args: list[str]) -> str:
    """`nn-cli ARGS` run by two launchers of one process each, rendezvous on 127.0.0.1."""
    port = free_port()
    command = [sys.executable, "-m", "core.training.torchrun", "--nnodes", "2",
               "--nproc-per-node", "1", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"bench-{port}",
               "--max-restarts", "0", CLI, *args]
    launchers = [subprocess.Popen(command, env=env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in launchers]
    for p, (_, err) in zip(launchers, outs):
        if p.returncode != 0:
            sys.exit(f"a launcher failed ({p.returncode}):\n{err[-3000:]}")
    printed = [out for out, _ in outs if out.strip()]
    assert len(printed) == 1, "exactly one node holds rank 0, which alone prints"
    return printed[0]


def nodes() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        train = ["train", "--epochs", "20", "--json", "--seed", "3"]
        checks = {
            "sweep (compare, 4 x 30)": SWEEP,
            "data-parallel train": train,
        }
        print("two nodes (two launchers, --nnodes 2, c10d on 127.0.0.1) against one node "
              "(--workers 2):")
        for name, args in checks.items():
            _, one = timed([sys.executable, CLI, *args, "--workers", "2"])
            two = two_nodes(args)
            print(f"  {name}: identical output: {'yes' if one == two else 'NO'}")
        del tmp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="sweep,step,nodes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker-step", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-parts", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_step:
        worker_step(args.repeats, args.steps)
        return
    if args.worker_parts:
        worker_parts()
        return
    sections = args.only.split(",")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    if "sweep" in sections:
        sweep(args.repeats)
        sweep_parts()
    if "step" in sections:
        step(args.repeats * 3, args.steps, args.rounds)
    if "nodes" in sections:
        nodes()


if __name__ == "__main__":
    main()
