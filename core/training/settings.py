"""Run settings: a plain dataclass, checked on creation, free of torch so the CLI starts fast."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from core.errors import SettingsError
from core.lazy import torch
from core.keyvalue import parse_pair
from core.network.stack import EXAMPLE, parse_layer_text

DTYPE_NAMES = ("float32", "float64")
DEVICE_NAMES = ("cpu", "cuda")
MAX_SEED = 2**40
PREPROCESS_NAMES = ("standardize", "none")  # see core/data/preprocess.py
SCHEDULE_NAMES = ("cosine", "constant")  # see core/training/schedule.py
OptimizerArgs = tuple[tuple[str, bool | int | float], ...]
DEFAULT_ACT, DEFAULT_HIDDEN = "tanh", (25, 25, 25)  # the report's network


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides a run; the same settings give the same result bit for bit."""

    act: str = DEFAULT_ACT  # activation after each hidden layer (not with layers)
    loss: str = "bce"  # loss on the network's single output (bench/defaults.py: why bce)
    init: str = "xavier"  # weight initializer of every linear layer
    optimizer: str = "adam"  # optimizer updating the parameters
    hidden: tuple[int, ...] = DEFAULT_HIDDEN  # hidden layer widths (not with layers)
    epochs: int = 150  # passes over the training set
    lr: float = 0.04  # learning rate (the schedule's starting value)
    batch_size: int = 200  # samples per gradient step
    seed: int = 0  # draws the data, the weights and the shuffling
    n_train: int = 1000  # training points
    n_test: int = 1000  # test points
    dtype: str = "float32"  # precision of data and weights
    # The whole network by registered names, e.g. "linear:out=25,tanh,linear:out=1"
    # (core.network.stack); when given it replaces act and hidden.
    layers: str | None = None
    device: str = "cpu"  # where tensors live and compute: cpu or cuda (seeds draw on the CPU)
    preprocess: str = "standardize"  # input step fitted on the training inputs: standardize, none
    schedule: str = "cosine"  # learning rate over the epochs: cosine (decays to 0), constant
    optimizer_args: OptimizerArgs = ()  # extra optimizer options, e.g. (("momentum", 0.9),)
    # What to learn: a registered dataset with options ("spiral:arms=3,noise=0.2", see
    # `nn-cli list dataset`) or a .csv/.tsv/.json/.npz file (core/data/dataset.py).
    data: str = "disk"
    target: str | None = None  # a file's target column (default: "label", else the last)
    # held out for testing when the data has no test split; 0: train on every row, test none
    test_fraction: float = 0.25
    val_fraction: float = 0.0  # of the training rows, held out to pick the best epoch
    patience: int | None = None  # stop after this many epochs without a lower validation loss

    def __post_init__(self) -> None:
        if isinstance(self.optimizer_args, Mapping):  # accept a dict; store it hashable, sorted
            object.__setattr__(self, "optimizer_args", tuple(sorted(self.optimizer_args.items())))
        positive_ints = {
            "epochs": self.epochs, "batch_size": self.batch_size,
            "n_train": self.n_train, "n_test": self.n_test,
        }
        for name, value in positive_ints.items():
            if not _is_int(value) or value < 1:
                raise SettingsError(f"{name} must be an integer >= 1, got {value!r}")
        if self.layers is not None:
            self._check_beside_layers()
        if not self.hidden or any(not _is_int(w) or w < 1 for w in self.hidden):
            shown = (",".join(map(str, self.hidden)) if isinstance(self.hidden, tuple)
                     else repr(self.hidden))  # as typed: 25,0 rather than (25, 0)
            raise SettingsError(
                f"hidden must be one or more integer widths >= 1, such as 25,25,25; got {shown}"
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
        for name, value, accepted in (
            ("preprocess", self.preprocess, PREPROCESS_NAMES),
            ("schedule", self.schedule, SCHEDULE_NAMES),
        ):
            if value not in accepted:
                raise SettingsError(f"{name} must be one of {', '.join(accepted)}, got {value!r}")
        self._check_data()
        for pair in self.optimizer_args:
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)
                    and isinstance(pair[1], (bool, int, float))):
                raise SettingsError(
                    f"optimizer_args must map option names to numbers or booleans, got {pair!r}"
                )

    def _check_beside_layers(self) -> None:
        """`layers` is the whole network: act and hidden, which shape only the default one,
        must stay at their defaults (None, as `to_dict` writes them, reads as the default)."""
        for name, default in (("act", DEFAULT_ACT), ("hidden", DEFAULT_HIDDEN)):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, default)
            elif value != default:
                raise SettingsError(
                    f"layers gives the whole network, so {name}={value!r} would be ignored; "
                    f"drop {name}, or write it into layers (such as {EXAMPLE!r})"
                )

    def to_dict(self) -> dict[str, Any]:
        """Every field; those added with datasets (DATA_FIELDS) only when they differ from
        their defaults, so a disk run's JSON and files read exactly as before them. With
        `layers`, act and hidden are None: the stack is the network."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["optimizer_args"] = dict(self.optimizer_args)
        for name, default in DATA_FIELDS.items():
            if d[name] == default:
                del d[name]
        if self.layers is not None:
            d["act"] = d["hidden"] = None
        return d


    def _check_data(self) -> None:
        from core.data.dataset import parse_data_text  # the syntax now; names with a registry

        parse_data_text(self.data)
        if self.target is not None and (not isinstance(self.target, str) or not self.target):
            raise SettingsError(f"target must be a column name or number, got {self.target!r}")
        for name, value in (("test_fraction", self.test_fraction), ("val_fraction", self.val_fraction)):
            # 0: none held out (test_fraction 0 trains on every row; nothing is tested)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise SettingsError(f"{name} must be a number in [0, 1), got {value!r}")
        if self.patience is not None:
            if not _is_int(self.patience) or self.patience < 1:
                raise SettingsError(f"patience must be an integer >= 1, got {self.patience!r}")
            if not self.val_fraction > 0:
                raise SettingsError(
                    "patience stops on the validation loss: give val_fraction too "
                    "(e.g. --val-fraction 0.2 --patience 10)"
                )


# settings field -> the nn-cli option that sets it (n_train and n_test have none)
OPTIONS = {name: "--" + name.replace("_", "-")
           for name in ("act", "loss", "init", "optimizer", "hidden", "epochs", "lr", "batch_size",
                        "seed", "dtype", "layers", "device", "preprocess", "schedule", "data",
                        "target", "test_fraction", "val_fraction", "patience")} | {"optimizer_args": "--opt"}


def in_option_words(message: str) -> str:
    """A settings error in the command line's words: `--test-fraction must be ...`, where the
    library says `test_fraction must be ...`. Two-word names are replaced wherever they
    stand; one-word ones (lr, seed) only as the sentence's subject."""
    import re

    for name, option in OPTIONS.items():
        if "_" in name:
            message = re.sub(rf"(?<![\w-]){name}\b", option, message)
        elif message.startswith(f"{name} must "):
            message = option + message[len(name):]
    return message


# Fields added with datasets and their defaults: left out of to_dict() at these values.
DATA_FIELDS = {"data": "disk", "target": None, "test_fraction": 0.25, "val_fraction": 0.0,
               "patience": None}


def has_data_settings(settings: TrainSettings) -> bool:
    """Whether any dataset setting (--data, --target, fractions, patience) is not its default."""
    return any(name in DATA_FIELDS for name in settings.to_dict())


class _TorchDtypes(Mapping):
    """The `dtype` setting's names -> torch dtypes, torch imported on first lookup (this
    module stays free of it)."""

    def __getitem__(self, name: str) -> Any:
        if name not in DTYPE_NAMES:
            raise KeyError(name)
        return getattr(torch, name)

    def __iter__(self):
        return iter(DTYPE_NAMES)

    def __len__(self) -> int:
        return len(DTYPE_NAMES)


DTYPES = _TorchDtypes()  # settings.dtype -> the torch dtype of data and weights


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


def parse_optimizer_args(text: str) -> OptimizerArgs:
    """'momentum=0.9,nesterov=true' -> (("momentum", 0.9), ("nesterov", True)); '' -> ()."""
    pairs: dict[str, bool | int | float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        parsed = parse_pair(part)
        if parsed is None or isinstance(parsed[1], str) or not math.isfinite(parsed[1]):
            raise SettingsError(
                f"optimizer options must be KEY=VALUE pairs with a number or true/false, "
                f"comma-separated, such as momentum=0.9,nesterov=true; got {text!r}"
            )
        pairs[parsed[0]] = parsed[1]
    return tuple(sorted(pairs.items()))
