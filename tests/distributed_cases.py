"""One process of a 2-process group that tests/test_distributed.py starts (gloo, 127.0.0.1).

    python tests/distributed_cases.py OUT_DIR      (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set)

Runs every case below in the same process group, one after another, and saves what each
gave on this rank to OUT_DIR/rank{RANK}.pt; the test compares that with one process.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
EXTRAS = Path(__file__).resolve().parent.parent / "examples" / "nn-scratch-extras"
sys.path.insert(0, str(EXTRAS))

from core import TrainSettings  # noqa: E402
from core.pipeline.compare import compare  # noqa: E402
from core.plugin.discovery import load_registry  # noqa: E402
from core.pipeline.sharing import claims  # noqa: E402
from core.training.distributed import DistributedError, World  # noqa: E402
from core.errors import NNError  # noqa: E402
from core.pipeline.train import train  # noqa: E402
from core.pipeline.multirun import run_many  # noqa: E402

# float64, a few epochs; batch 30 of 100 samples leaves a last batch of 10, and batch 1
# leaves one rank with no sample in every batch.
DATA_PARALLEL = {
    "adam_uneven": TrainSettings(dtype="float64", epochs=3, batch_size=30, n_train=100,
                                 n_test=50, hidden=(7, 5), seed=3),
    "sgd_momentum_batch_1": TrainSettings(dtype="float64", epochs=1, batch_size=1, n_train=20,
                                          n_test=20, hidden=(4,), optimizer="sgd", lr=0.05,
                                          optimizer_args=(("momentum", 0.9),), seed=5),
    "plugin_layer": TrainSettings(dtype="float64", epochs=2, batch_size=16, n_train=64,
                                  n_test=32, layers="linear:out=6,prelu:alpha=0.1,linear:out=1"),
}
SWEEP_BASE = TrainSettings(epochs=2, hidden=(6,), n_train=60, n_test=40, batch_size=20, seed=7)
SWEEP_VARIATIONS = {"act": ["tanh", "relu"], "loss": ["bce", "mse"]}
SWEEP_RUNS = 3  # 4 configurations x 3 seeds: each configuration one group, taken by a free rank
# batchnorm on the raw inputs, one full batch of 40 per epoch: each rank normalises its 20
BATCHNORM = TrainSettings(dtype="float64", epochs=1, batch_size=40, n_train=40, n_test=20,
                          preprocess="none", layers="batchnorm,linear:out=4,tanh,linear:out=1",
                          seed=2)
CLAIMS = (5, 3)  # two successive calls of `claims`, each handing out range(count)


def registry():
    return load_registry(["nn_scratch_extras"])


def main(out: Path) -> None:
    torch.set_num_threads(1)
    world = World.from_env()
    reg = registry()
    found: dict[str, object] = {"world": (world.rank, world.size)}
    for name, settings in DATA_PARALLEL.items():
        result = train(settings, reg, world=world)
        found[name] = {"weights": [p.value.clone() for p in result.model.parameters()],
                       "losses": result.losses,
                       "errors": (result.train_error, result.test_error)}
    for together in (False, True):
        comparison = compare(SWEEP_BASE, SWEEP_VARIATIONS, SWEEP_RUNS, reg,
                             together=together, world=world)
        found[f"sweep_together_{together}"] = comparison and comparison.to_dict()
    normed = train(BATCHNORM, reg, world=world)
    found["batchnorm"] = {"weights": [p.value.clone() for p in normed.model.parameters()],
                          "buffers": {k: v.clone() for k, v in normed.model.buffers().items()}}
    found["claims"] = [list(claims(world, count)) for count in CLAIMS]
    many = run_many(replace(SWEEP_BASE, dtype="float64"), 5, reg, world=world)
    found["runs_float64"] = many and many.to_dict()
    found["settings_differ"] = failure(
        lambda: train(replace(DATA_PARALLEL["adam_uneven"], seed=world.rank), reg, world=world))
    found["diverges"] = failure(  # one rank's failure in a sweep stops every rank, same message
        lambda: run_many(replace(SWEEP_BASE, lr=1e9, epochs=3), 2, reg, world=world))
    torch.save(found, out / f"rank{world.rank}.pt")


def failure(call) -> tuple[str, str] | None:
    try:
        call()
    except NNError as e:
        return type(e).__name__, str(e)
    return None


if __name__ == "__main__":
    assert DistributedError  # imported for the reader: the error `settings_differ` expects
    main(Path(sys.argv[1]))
