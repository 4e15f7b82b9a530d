"""The datasets of issue 13 against outside references, on the same points, seeds 0-4.

    python bench/datasets.py            # every data set, seeds 0-4, and the 1,000,000-row CSV
    python bench/datasets.py --quick    # seeds 0-1, a 100,000-row CSV: a sanity run
    python bench/datasets.py --only digits --only moons

Needs `pip install -e '.[bench]'` (scikit-learn, pandas).

For each data set and seed, `nn-cli train --data NAME` with its defaults (the same library
calls: `resolve`, then `train`) is measured against, on the same split (the
run's seeded, stratified 75/25 split, taken from `core.pipeline.prepare.raw_split`)
and the same standardised inputs:
  - scikit-learn's MLPClassifier / MLPRegressor of the issue's shape (digits: (100,) and
    its defaults; the 2-D sets and breast_cancer: (25, 25, 25); diabetes: MLPRegressor
    (25, 25, 25) with early stopping), random_state = seed;
  - for digits, also torch.nn + torch.optim: an MLP 64-128-10 (ReLU), Adam lr 1e-3,
    batch 32, 60 epochs, cross-entropy, torch.manual_seed(seed).
The sides run alternately, seed by seed, on one thread; time per run is wall time of the
whole run (ours: building the data, the split, training, the errors), median over seeds.
Test error: mean ± sample std over the seeds; diabetes: R^2.

Then file reading: a 1,000,000-row CSV of 10 numeric columns (9 features, a 0/1 label),
read for training by `core.read_data_file` (with pandas installed, and without: numpy.loadtxt)
and by `pandas.read_csv` (+ `.to_numpy()`), each in a fresh process after a warm-up read of
a 4-row file, alternating, 3 times: median wall time and peak resident memory above the
process's memory before reading.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch

from core import TrainSettings, default_registry, train
from core.pipeline.prepare import raw_split
from core.pipeline.resolve import resolve

SETS = ["digits", "moons", "circles", "xor", "spiral", "gauss", "breast_cancer", "diabetes"]
READER = """
import resource, sys, time
def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024
which, path, small = sys.argv[1], sys.argv[2], sys.argv[3]
import os
if which == "ours-numpy":  # core.data.reading falls back on numpy without pandas
    sys.modules["pandas"] = None
if which.startswith("ours"):
    from core import read_data_file
    read_data_file(small)  # a warm-up read, so lazy imports do not count as the file's memory
else:
    import pandas
    pandas.read_csv(small).to_numpy()
before = rss_kib()
start = time.perf_counter()
if which.startswith("ours"):
    data = read_data_file(path)
    rows = len(data.x_train)
else:
    frame = pandas.read_csv(path)
    x = frame.iloc[:, :-1].to_numpy(dtype="float64")
    rows = len(x)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(seconds, (peak - before) / 1024, rows)
"""


def standardised(x_train, x_test):
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_test)


def sklearn_run(name, seed, x_train, y_train, x_test, y_test):
    """(test error or R^2, seconds) of scikit-learn's reference on these points."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    start = time.perf_counter()
    a, b = standardised(x_train, x_test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if name == "diabetes":
            model = MLPRegressor(hidden_layer_sizes=(25, 25, 25), early_stopping=True,
                                 random_state=seed)
            model.fit(a, y_train.ravel())
            score = model.score(b, y_test.ravel())  # R^2
        else:
            shape = (100,) if name == "digits" else (25, 25, 25)
            model = MLPClassifier(hidden_layer_sizes=shape, random_state=seed).fit(a, y_train)
            score = float((model.predict(b) != y_test).mean())
    return score, time.perf_counter() - start


def torch_run(seed, x_train, y_train, x_test, y_test):
    """(test error, seconds) of the torch.nn reference for digits."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    mean, std = x_train.mean(0), x_train.std(0, correction=0).clamp(min=1e-12)
    xa, xb = ((x_train - mean) / std).float(), ((x_test - mean) / std).float()
    ya = y_train.long()
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(60):
        order = torch.randperm(len(xa))
        for i in range(0, len(xa), 32):
            batch = order[i : i + 32]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(xa[batch]), ya[batch]).backward()
            optimizer.step()
    with torch.no_grad():
        error = (net(xb).argmax(1) != y_test.long()).double().mean().item()
    return error, time.perf_counter() - start


def ours_run(registry, name, seed):
    settings = resolve(TrainSettings(data=name, seed=seed), registry).settings
    start = time.perf_counter()
    with torch.set_grad_enabled(False):
        result = train(settings, registry)
    seconds = time.perf_counter() - start
    score = result.metrics["r2"] if name == "diabetes" else result.test_error
    return score, seconds, settings


def summary(values):
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def bench_sets(names, seeds) -> None:
    registry = default_registry()
    print("| data | ours (defaults) | scikit-learn | difference | torch.nn | ours s/run | sklearn s/run | torch s/run |")
    print("|---|---|---|---|---|---:|---:|---:|")
    for name in names:
        ours, ref, ref_torch = [], [], []
        t_ours, t_ref, t_torch = [], [], []
        settings = None
        for seed in seeds:
            score, seconds, settings = ours_run(registry, name, seed)
            ours.append(score)
            t_ours.append(seconds)
            split = raw_split(settings, registry)  # the same points our run used
            points = [t.numpy() for t in (split.x_train, split.y_train, split.x_test, split.y_test)]
            score, seconds = sklearn_run(name, seed, *points)
            ref.append(score)
            t_ref.append(seconds)
            if name == "digits":
                score, seconds = torch_run(seed, split.x_train, split.y_train, split.x_test, split.y_test)
                ref_torch.append(score)
                t_torch.append(seconds)
        (m, s), (rm, rs) = summary(ours), summary(ref)
        if name == "diabetes":
            cells = [f"R^2 {m:.3f} ± {s:.3f}", f"R^2 {rm:.3f} ± {rs:.3f}", f"{m - rm:+.3f}"]
        else:
            cells = [f"{m:.2%} ± {s:.2%}", f"{rm:.2%} ± {rs:.2%}", f"{(m - rm) * 100:+.2f} points"]
        if ref_torch:
            tm, ts = summary(ref_torch)
            cells.append(f"{tm:.2%} ± {ts:.2%}")
        else:
            cells.append("")
        times = [f"{statistics.median(t):.2f}" if t else "" for t in (t_ours, t_ref, t_torch)]
        print(f"| {name} | " + " | ".join(cells + times) + " |", flush=True)
        changed = {k: v for k, v in settings.to_dict().items()
                   if k in ("act", "hidden", "epochs", "lr", "batch_size", "loss")}
        print(f"<!-- {name}: {changed} -->", flush=True)


def bench_csv(rows: int, repeats: int) -> None:
    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.csv"
        rng = np.random.default_rng(0)
        x = rng.standard_normal((rows, 9))
        y = (x[:, 0] + x[:, 1] > 0).astype(int)
        header = ",".join([f"f{j}" for j in range(9)] + ["label"])
        with open(path, "w") as f:
            f.write(header + "\n")
            np.savetxt(f, np.column_stack([x, y]), delimiter=",", fmt=["%.6f"] * 9 + ["%d"])
        size = path.stat().st_size / 2**20
        small = Path(folder) / "small.csv"
        small.write_text("".join(path.open().readline() for _ in range(1)) + "0,0,0,0,0,0,0,0,0,0\n"
                         "1,1,1,1,1,1,1,1,1,1\n" * 2 + "0,0,0,0,0,0,0,0,0,0\n")
        results = {"ours": [], "ours-numpy": [], "pandas": []}
        for _ in range(repeats):
            for which in results:  # alternating
                out = subprocess.run([sys.executable, "-c", READER, which, str(path), str(small)],
                                     capture_output=True, text=True, check=True)
                seconds, mib, n = out.stdout.split()
                assert int(n) == rows
                results[which].append((float(seconds), float(mib)))
        print(f"\nReading a {rows:,}-row CSV of 10 numeric columns ({size:.0f} MiB), "
              f"median of {repeats} fresh processes each:")
        print("| reader | seconds | peak memory above start (MiB) |")
        print("|---|---:|---:|")
        for which, label in (("ours", "core.read_data_file (pandas installed)"),
                             ("ours-numpy", "core.read_data_file (numpy.loadtxt, no pandas)"),
                             ("pandas", "pandas.read_csv + to_numpy")):
            seconds = statistics.median(s for s, _ in results[which])
            mib = statistics.median(m for _, m in results[which])
            print(f"| {label} | {seconds:.2f} | {mib:.0f} |")
        for which in ("ours", "ours-numpy"):
            ratio = statistics.median(s for s, _ in results[which]) / statistics.median(
                s for s, _ in results["pandas"])
            print(f"{which} / pandas time: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seeds 0-1, a 100,000-row CSV")
    parser.add_argument("--only", action="append", choices=SETS, help="these data sets only")
    parser.add_argument("--no-csv", action="store_true", help="skip the file-reading part")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as nn-cli does; the references get one thread too
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    seeds = range(2) if args.quick else range(5)
    print(f"seeds {list(seeds)}, stratified 75/25 split, torch {torch.__version__}\n")
    bench_sets(args.only or SETS, seeds)
    if not args.no_csv:
        bench_csv(100_000 if args.quick else 1_000_000, 2 if args.quick else 3)


if __name__ == "__main__":
    main()
