"""How the defaults were chosen: mean test error of candidate training recipes.

    python bench/defaults.py              # seeds 0-5, every candidate, tanh with mse and bce
    python bench/defaults.py --seeds 10 --loss mse

Each candidate changes a few settings from the report's recipe (plain SGD, lr 0.1,
raw inputs) towards the current defaults; every other setting is the default
(tanh, Xavier, 25-25-25, 100 epochs, batch 10). Runs go through `core.multirun.run_many`,
as `nn-cli train --runs N` does.
"""

from __future__ import annotations

import argparse
import time

import torch

from core import TrainSettings, default_registry
from core.multirun import run_many

REPORT = dict(optimizer="sgd", lr=0.1, schedule="constant", preprocess="none")
CANDIDATES = {
    "report: sgd lr 0.1": REPORT,
    "+ standardised inputs": REPORT | dict(preprocess="standardize"),
    "sgd momentum 0.9, lr 0.02, cosine": dict(
        optimizer="sgd", optimizer_args={"momentum": 0.9}, lr=0.02, schedule="cosine"),
    "adam lr 0.01, constant": dict(optimizer="adam", lr=0.01, schedule="constant"),
    "adam lr 0.01, cosine (defaults)": {},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=6, help="seeds 0 .. N-1")
    parser.add_argument("--loss", action="append", help="loss (repeatable); default mse and bce")
    args = parser.parse_args()
    registry = default_registry()
    torch.set_num_threads(1)  # as nn-cli does: tiny tensors, extra threads only spin
    losses = args.loss or ["mse", "bce"]
    print(f"{'recipe':<36} {'loss':<5} {'mean test error':>16} {'std':>7} {'s/run':>7}")
    for name, changes in CANDIDATES.items():
        for loss in losses:
            start = time.perf_counter()
            result = run_many(TrainSettings(loss=loss, **changes), args.seeds, registry)
            s = result.summary()
            print(f"{name:<36} {loss:<5} {s['test_error_mean']:>16.2%} {s['test_error_std']:>7.2%} "
                  f"{(time.perf_counter() - start) / args.seeds:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
