"""Run settings: a plain dataclass, checked on creation, free of torch so the CLI starts fast."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from core.errors import SettingsError
from core.stack import EXAMPLE, parse_layer_text

DTYPE_NAMES = ("float32", "float64")
DEVICE_NAMES = ("cpu", "cuda")
MAX_SEED = 2**40


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides a run; the same settings give the same result bit for bit."""

    act: str = "tanh"  # activation after each hidden layer
    loss: str = "mse"  # loss on the network's single output
    init: str = "xavier"  # weight initializer of every linear layer
    optimizer: str = "sgd"  # optimizer updating the parameters
    hidden: tuple[int, ...] = (25, 25, 25)  # hidden layer widths
    epochs: int = 100  # passes over the training set
    lr: float = 0.1  # learning rate
    batch_size: int = 10  # samples per gradient step
    seed: int = 0  # draws the data, the weights and the shuffling
    n_train: int = 1000  # training points
    n_test: int = 1000  # test points
    dtype: str = "float32"  # precision of data and weights
    # The whole network by registered names, e.g. "linear:out=25,tanh,linear:out=1"
    # (core.stack); when given it replaces act and hidden.
    layers: str | None = None
    device: str = "cpu"  # where tensors live and compute: cpu or cuda (seeds draw on the CPU)

    def __post_init__(self) -> None:
        positive_ints = {
            "epochs": self.epochs, "batch_size": self.batch_size,
            "n_train": self.n_train, "n_test": self.n_test,
        }
        for name, value in positive_ints.items():
            if not _is_int(value) or value < 1:
                raise SettingsError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.hidden or any(not _is_int(w) or w < 1 for w in self.hidden):
            raise SettingsError(
                f"hidden must be one or more integer widths >= 1, got {self.hidden!r}"
            )
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise SettingsError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not _is_int(self.seed) or not 0 <= self.seed < MAX_SEED:
            raise SettingsError(f"seed must be an integer in [0, {MAX_SEED}), got {self.seed!r}")
        if self.dtype not in DTYPE_NAMES:
            raise SettingsError(
                f"dtype must be one of {', '.join(DTYPE_NAMES)}, got {self.dtype!r}"
            )
        if self.device not in DEVICE_NAMES:
            raise SettingsError(
                f"device must be one of {', '.join(DEVICE_NAMES)}, got {self.device!r}"
            )
        if self.layers is not None:
            if not isinstance(self.layers, str):
                raise SettingsError(f"layers must be a string such as {EXAMPLE!r}, got {self.layers!r}")
            parse_layer_text(self.layers)  # the syntax now; names once a registry is at hand

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_widths(text: str) -> tuple[int, ...]:
    """'25,25,25' -> (25, 25, 25); a clear error for anything else."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise SettingsError(
            f"hidden must be comma-separated integer widths such as 25,25,25, got {text!r}"
        ) from None
    return widths
