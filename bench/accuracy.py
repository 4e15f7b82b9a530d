"""Mean test error of `nn-cli train --runs N` for several configurations.

    python bench/accuracy.py                          # seeds 0-9; tanh and relu, bce and mse
    python bench/accuracy.py --runs 30 --config tanh:mse --config tanh:bce

Each configuration is trained through the same library call that `nn-cli train --runs N`
makes (`core.pipeline.multirun.run_many`), with every other setting at its default. Prints, per
configuration, the mean and sample standard deviation of the test error over the runs,
its min and max, and the wall time per run.
"""

from __future__ import annotations

import argparse
import time

import torch

from core import TrainSettings, default_registry
from core.pipeline.multirun import run_many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", "--seeds", type=int, default=10, help="seeds 0 .. N-1")
    parser.add_argument(
        "--config", action="append", metavar="ACT:LOSS",
        help="activation:loss pair (repeatable); default tanh:bce tanh:mse relu:bce relu:mse",
    )
    args = parser.parse_args()
    configs = args.config or ["tanh:bce", "tanh:mse", "relu:bce", "relu:mse"]
    registry = default_registry()
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)  # as nn-cli does: tiny tensors, extra threads only spin
    print(f"defaults: {TrainSettings().to_dict()}")
    print(f"{'config':<10} {'runs':>5} {'mean test error':>16} {'std':>7} {'min':>7} {'max':>7} {'s/run':>7}")
    for config in configs:
        act, loss = config.split(":")
        start = time.perf_counter()
        result = run_many(TrainSettings(act=act, loss=loss), args.runs, registry)
        per_run = (time.perf_counter() - start) / args.runs
        s, errors = result.summary(), result.test_errors
        print(
            f"{config:<10} {args.runs:>5} {s['test_error_mean']:>16.2%} {s['test_error_std']:>7.2%} "
            f"{min(errors):>7.2%} {max(errors):>7.2%} {per_run:>7.2f}", flush=True,
        )


if __name__ == "__main__":
    main()
