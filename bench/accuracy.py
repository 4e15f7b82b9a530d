"""Mean test error of `nn-cli train` over seeds, for several configurations.

    python bench/accuracy.py                 # seeds 0-9; tanh/mse, relu/mse, tanh/bce
    python bench/accuracy.py --seeds 30 --config tanh:mse

Each configuration is trained through the same library call that `nn-cli train` makes,
with every other setting at its default.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from core import TrainSettings, default_registry, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1")
    parser.add_argument(
        "--config", action="append", metavar="ACT:LOSS",
        help="activation:loss pair (repeatable); default tanh:mse relu:mse tanh:bce",
    )
    args = parser.parse_args()
    configs = args.config or ["tanh:mse", "relu:mse", "tanh:bce"]
    registry = default_registry()
    torch.set_grad_enabled(False)
    print(f"{'config':<10} {'mean test error':>16} {'min':>7} {'max':>7} {'s/run':>7}")
    for config in configs:
        act, loss = config.split(":")
        errors, start = [], time.perf_counter()
        for seed in range(args.seeds):
            result = train(TrainSettings(act=act, loss=loss, seed=seed), registry)
            errors.append(result.test_error)
        per_run = (time.perf_counter() - start) / args.seeds
        print(
            f"{config:<10} {statistics.mean(errors):>16.2%} {min(errors):>7.2%} "
            f"{max(errors):>7.2%} {per_run:>7.2f}", flush=True,
        )


if __name__ == "__main__":
    main()
