"""Small tables (issue 23): our defaults and `nn-cli tune` against scikit-learn, seeds 0-4.

    flock /tmp/bench.lock python bench/small_tables.py                 # everything
    flock /tmp/bench.lock python bench/small_tables.py --trials 20 --only iris
    python bench/small_tables.py --skip-tune                            # the defaults only

Needs `pip install -e '.[bench,tune]'` (scikit-learn, Optuna).

For iris, wine, breast_cancer (error: fraction of held-out rows misclassified) and diabetes
(R^2 on held-out rows), each seed 0-4:

1. The split of the datasets issue (bench/datasets.py): the run's seeded, stratified 75/25
   split (`core.pipeline.prepare.raw_split`). Ours: `nn-cli train --data NAME` with no
   options (the same library calls: `resolve`, then `train`), scored on its test
   split. scikit-learn: MLPClassifier / MLPRegressor with its defaults (random_state=seed)
   on the same training rows, inputs standardised (StandardScaler, as a careful user does)
   and, for the regressor, the targets too (TransformedTargetRegressor), as ours does.
2. A fresh split of each table, `train_test_split(test_size=0.25, random_state=seed,
   stratify=y)`, written as train.csv and held_out.csv. Ours: `nn-cli train --data
   train.csv --save m` with no options, then `nn-cli evaluate m --input held_out.csv` (so
   ours trains on 75 % of train.csv: its own test split is held out of it; scikit-learn
   fits all of train.csv). scikit-learn's MLP with its defaults, as in 1.
3. On the files of 2: `nn-cli tune --data train.csv --trials T --save m` (the space below,
   scored as tune chooses: 5 folds below 1000 training rows, the folds picking the epochs;
   `--cv K` or `--holdout F` passed on; run as a command, its wall time measured),
   then `nn-cli evaluate m --input held_out.csv`; against GridSearchCV (5 folds) over
   MLP's penalty `alpha` and width, and on diabetes RidgeCV.

Printed: one table per part, mean over the seeds (and the sample std), side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from core import TrainSettings, default_registry, train
from core.files.inference import evaluate_model
from core.files.model_file import save_model
from core.pipeline.prepare import raw_split
from core.pipeline.resolve import resolve

SETS = ["iris", "wine", "breast_cancer", "diabetes"]
ROOT = Path(__file__).resolve().parents[1]
SPACE = ["lr=0.001..0.05:log", "hidden=8..128:log", "depth=1..2", "l2=1e-4..0.3:log"]
GRID = {"alpha": [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0],
        "hidden_layer_sizes": [(16,), (32,), (64,), (100,)]}


def sklearn_mlp(name, seed, x_train, y_train, x_test, y_test) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), _mlp(name, seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(x_train, y_train)
    return _score(name, pipe, x_test, y_test)


def _mlp(name: str, seed: int):
    """MLPClassifier, or MLPRegressor on standardised targets (as ours trains): on raw
    diabetes targets (25-346) its defaults score R^2 -1.1 to -1.4 in 200 iterations."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.preprocessing import StandardScaler

    if name == "diabetes":
        return TransformedTargetRegressor(MLPRegressor(random_state=seed), transformer=StandardScaler())
    return MLPClassifier(random_state=seed)


def _score(name, fitted, x_test, y_test) -> float:
    if name == "diabetes":
        return float(fitted.score(x_test, y_test))  # R^2
    return float((fitted.predict(x_test) != y_test).mean())


def sklearn_grid(name, seed, x_train, y_train, x_test, y_test) -> tuple[float, float, dict]:
    """(score, seconds, best parameters) of GridSearchCV over MLP's alpha and width."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = Pipeline([("scale", StandardScaler()), ("mlp", _mlp(name, seed))])
    prefix = "mlp__regressor__" if name == "diabetes" else "mlp__"
    grid = {prefix + k: v for k, v in GRID.items()}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(pipe, grid, cv=5, n_jobs=1).fit(x_train, y_train)
    return _score(name, search, x_test, y_test), time.perf_counter() - start, search.best_params_


def ridge(x_train, y_train, x_test, y_test) -> float:
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fitted = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13))).fit(x_train, y_train)
    return float(fitted.score(x_test, y_test))


def ours_on_split(name: str, seed: int, registry) -> float:
    """`nn-cli train --data NAME --seed S`: its test split's error or R^2."""
    resolved = resolve(TrainSettings(data=name, seed=seed), registry, {"data", "seed"})
    result = train(resolved, registry)
    return result.metrics["r2"] if name == "diabetes" else result.test_error


def write_files(name: str, seed: int, folder: Path):
    """train.csv and held_out.csv of a fresh seeded split; the arrays too."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    bunch = getattr(datasets, f"load_{name}")()
    x, y = bunch.data, bunch.target
    stratify = None if name == "diabetes" else y
    xa, xb, ya, yb = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=stratify)
    paths = []
    for part, xs, ys in (("train", xa, ya), ("held_out", xb, yb)):
        path = folder / f"{name}_{seed}_{part}.csv"
        lines = [",".join([f"f{i}" for i in range(x.shape[1])] + ["label"])]
        for row, target in zip(xs, ys):
            label = repr(float(target)) if name == "diabetes" else str(int(target))
            lines.append(",".join(repr(float(v)) for v in row) + "," + label)
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths, (xa, ya, xb, yb)


def held_out_score(name: str, model: Path, held_out: Path, registry) -> float:
    evaluated = evaluate_model(model, input_path=held_out, registry=registry)
    return evaluated.metrics["r2"] if name == "diabetes" else evaluated.error


def ours_on_files(name, seed, train_csv, held_out, folder, registry) -> float:
    """`nn-cli train --data train.csv --save m`, then `nn-cli evaluate m --input held_out.csv`."""
    resolved = resolve(TrainSettings(data=str(train_csv)), registry, {"data"})
    model = folder / f"{name}_{seed}_defaults.safetensors"
    save_model(model, train(resolved, registry), registry=registry)
    return held_out_score(name, model, held_out, registry)


def tune_on_files(name, seed, train_csv, held_out, folder, registry, trials, cv=None,
                  holdout=None) -> tuple[float, float]:
    """(held-out score, wall seconds) of `nn-cli tune ... --save m`, then evaluate."""
    model = folder / f"{name}_{seed}_tuned.safetensors"
    command = [sys.executable, str(ROOT / "cli.py"), "tune", "--data", str(train_csv),
               "--trials", str(trials), "--seed", str(seed), "--study", f"{name}_{seed}",
               "--storage", f"sqlite:///{folder}/studies.db", "--save", str(model), "--json"]
    for p in SPACE:
        command += ["--param", p]
    if cv:
        command += ["--cv", str(cv)]
    if holdout:
        command += ["--holdout", str(holdout)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=folder,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"tune failed on {name} seed {seed}: {done.stderr.strip()[-400:]}")
    return held_out_score(name, model, held_out, registry), seconds


def mean_std(values: list[float], percent: bool) -> str:
    m = statistics.mean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * m:5.2f} ± {100 * s:4.2f} %" if percent else f"{m:6.3f} ± {s:5.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--only", action="append", choices=SETS)
    parser.add_argument("--skip-tune", action="store_true")
    parser.add_argument("--cv", type=int, help="Score tune's trials by K folds (default: tune's choice).")
    parser.add_argument("--holdout", type=float, help="Score tune's trials on this share instead.")
    parser.add_argument("--json", metavar="FILE", help="Also write every figure here.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    registry = default_registry()
    names = args.only or SETS
    seeds = range(args.seeds)
    record: dict = {"seeds": args.seeds, "trials": args.trials, "cv": args.cv,
                    "holdout": args.holdout, "space": SPACE, "grid": {
        k: [list(v) if isinstance(v, tuple) else v for v in vs] for k, vs in GRID.items()}, "sets": {}}
    folder = Path(tempfile.mkdtemp(prefix="nn-small-tables-"))
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    for name in names:
        rows: dict[str, list] = {k: [] for k in (
            "split_ours", "split_sklearn", "files_ours", "files_sklearn", "tune", "tune_seconds",
            "grid", "grid_seconds", "ridge")}
        for seed in seeds:
            split = raw_split(TrainSettings(data=name, seed=seed), registry)
            arrays = [t.numpy() for t in (split.x_train, split.y_train, split.x_test, split.y_test)]
            arrays = [a.ravel() if a.ndim == 2 and a.shape[1] == 1 else a for a in arrays]
            rows["split_ours"].append(ours_on_split(name, seed, registry))
            rows["split_sklearn"].append(sklearn_mlp(name, seed, *arrays))
            (train_csv, held_out), data = write_files(name, seed, folder)
            rows["files_ours"].append(ours_on_files(name, seed, train_csv, held_out, folder, registry))
            rows["files_sklearn"].append(sklearn_mlp(name, seed, *data))
            if not args.skip_tune:
                score, seconds = tune_on_files(name, seed, train_csv, held_out, folder, registry,
                                               args.trials, args.cv, args.holdout)
                rows["tune"].append(score)
                rows["tune_seconds"].append(seconds)
                grid_score, grid_seconds, _ = sklearn_grid(name, seed, *data)
                rows["grid"].append(grid_score)
                rows["grid_seconds"].append(grid_seconds)
                if name == "diabetes":
                    rows["ridge"].append(ridge(*data))
            print(f"  {name} seed {seed} done (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
        record["sets"][name] = rows
        _print(name, rows)
    print(f"load average at end: {os.getloadavg()[0]:.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))


def _print(name: str, rows: dict) -> None:
    percent = name != "diabetes"
    what = "held-out error (lower is better)" if percent else "held-out R^2 (higher is better)"
    print(f"\n{name}: {what}, mean ± std over {len(rows['split_ours'])} seeds")
    print(f"  split of the datasets issue   ours (defaults) {mean_std(rows['split_ours'], percent)}"
          f"   sklearn MLP (defaults) {mean_std(rows['split_sklearn'], percent)}")
    print(f"  train/held-out files          ours (defaults) {mean_std(rows['files_ours'], percent)}"
          f"   sklearn MLP (defaults) {mean_std(rows['files_sklearn'], percent)}")
    if rows["tune"]:
        print(f"  files, searched               ours (tune)     {mean_std(rows['tune'], percent)}"
              f"   GridSearchCV MLP       {mean_std(rows['grid'], percent)}")
        print(f"  wall time per search          tune {statistics.median(rows['tune_seconds']):.1f} s"
              f" (median)      GridSearchCV {statistics.median(rows['grid_seconds']):.1f} s (median)")
        if rows["ridge"]:
            print(f"  diabetes, linear              RidgeCV         {mean_std(rows['ridge'], False)}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
