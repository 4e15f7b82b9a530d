"""How the defaults were chosen: mean test error of candidate training recipes.

    python bench/defaults.py              # seeds 0-29, every candidate, tanh with mse and bce
    python bench/defaults.py --seeds 10 --loss mse

Each candidate changes a few settings from the report's recipe (plain SGD, lr 0.1, raw
inputs, batch 10, 100 epochs) towards the current defaults; every other setting is the
default (tanh, Xavier, 25-25-25). Runs go through `core.pipeline.multirun.run_many`, as
`nn-cli train --runs N` does. `steps` is the number of optimizer steps of one run, which
is what a run's time follows.
"""

from __future__ import annotations

import argparse

import torch

from core import TrainSettings, default_registry
from core.pipeline.multirun import run_many

SMALL_BATCHES = dict(batch_size=10, epochs=100)
REPORT = SMALL_BATCHES | dict(optimizer="sgd", lr=0.1, schedule="constant", preprocess="none")
CANDIDATES = {
    "report: sgd lr 0.1, batch 10": REPORT,
    "+ standardised inputs": REPORT | dict(preprocess="standardize"),
    "sgd momentum 0.9, lr 0.02, cosine": SMALL_BATCHES | dict(
        optimizer="sgd", optimizer_args={"momentum": 0.9}, lr=0.02),
    "adam lr 0.01, constant": SMALL_BATCHES | dict(lr=0.01, schedule="constant"),
    "adam lr 0.01, cosine": SMALL_BATCHES | dict(lr=0.01),
    "adam lr 0.01, cosine, batch 200": dict(lr=0.01, epochs=100),
    "adam lr 0.04, cosine, batch 200": dict(epochs=100),
    "adam lr 0.04, cosine, batch 200, 150 epochs (defaults)": {},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=30, help="seeds 0 .. N-1")
    parser.add_argument("--loss", action="append", help="loss (repeatable); default mse and bce")
    args = parser.parse_args()
    registry = default_registry()
    torch.set_num_threads(1)  # as nn-cli does: tiny tensors, extra threads only spin
    losses = args.loss or ["mse", "bce"]
    print(f"{'recipe':<56} {'loss':<5} {'steps':>6} {'mean test error':>16} {'std':>7}")
    for name, changes in CANDIDATES.items():
        for loss in losses:
            settings = TrainSettings(loss=loss, **changes)
            steps = settings.epochs * -(-settings.n_train // settings.batch_size)
            result = run_many(settings, args.seeds, registry)
            s = result.summary()
            print(f"{name:<56} {loss:<5} {steps:>6} {s['test_error_mean']:>16.2%} {s['test_error_std']:>7.2%}",
                  flush=True)


if __name__ == "__main__":
    main()
