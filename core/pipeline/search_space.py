"""`nn-cli tune`'s search space: `--param` text, parsed once into dimensions.

Each `--param` is `NAME=SPEC`, NAME a training option (`lr`, `batch-size`, `hidden`, ...),
`opt.KEY` for one optimizer option (`opt.weight_decay`), or `depth` (the number of hidden
layers, all as wide as `hidden`). SPEC is one of

    VALUE             fixed for every trial               epochs=200
    LOW..HIGH         uniform: integers when the option   epochs=50..300, l2=0..0.01
                      is one, else real numbers
    LOW..HIGH:log     log-uniform                         lr=1e-4..0.1:log, hidden=8..128:log
    A|B|C             one of these                        act=tanh|relu, hidden=32|64,64

as Optuna's `suggest_int`, `suggest_float(log=...)` and `suggest_categorical` take them.
Parsing checks the text (names, numbers, ranges); `check_names` checks the registered names
a choice gives (activations, losses, stacks, ...) against a registry.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from core.errors import NNError, SettingsError
from core.keyvalue import parse_value
from core.network.stack import parse_layers
from core.training.settings import (
    DTYPE_NAMES, PREPROCESS_NAMES, SCHEDULE_NAMES, TrainSettings, parse_optimizer_args,
    parse_widths,
)


class SearchSpaceError(SettingsError):
    """A `--param` that cannot be searched: names the text and what would be accepted."""


# Options a trial may vary, and what their values are: int / float numbers, a registry kind
# (a choice of registered names), a fixed list of names, or text read by its own parser.
NUMBERS = {"epochs": int, "batch_size": int, "patience": int, "lr": float,
           "val_fraction": float, "l1": float, "l2": float, "depth": int}
REGISTERED = {"act": "activation", "loss": "loss", "init": "initializer",
              "optimizer": "optimizer"}
NAMED = {"dtype": DTYPE_NAMES, "preprocess": PREPROCESS_NAMES, "schedule": SCHEDULE_NAMES}
TEXTS = {"hidden": parse_widths, "layers": str, "opt": parse_optimizer_args}
# Options a search does not vary: the data and its test split stay the run's, the seed tune's.
NOT_SEARCHED = {"data": "--data", "target": "--target", "seed": "--seed",
                "test_fraction": "tune's own split (--cv, --holdout)",
                "n_train": "the disk's size", "n_test": "the disk's size", "device": "--device"}
ACCEPTED = sorted([*NUMBERS, *REGISTERED, *NAMED, *TEXTS, "opt.KEY"])


@dataclass(frozen=True)
class Dimension:
    """One searched (or fixed) option: a range of numbers or a list of choices."""

    name: str  # a TrainSettings field, "opt.KEY" or "depth"
    text: str  # NAME=SPEC as typed, for messages and the study's record
    choices: tuple[str, ...] = ()  # fixed (one) or categorical (several), as typed
    low: int | float | None = None  # a range: its ends, inclusive
    high: int | float | None = None
    log: bool = False
    integer: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None

    @property
    def searched(self) -> bool:
        return self.is_range or len(self.choices) > 1

    def suggest(self, trial: Any) -> Any:
        """This dimension's value for an Optuna trial (its parameter named `name`)."""
        if self.is_range and self.integer:
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        if self.is_range:
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if len(self.choices) > 1:
            return value_of(self.name, trial.suggest_categorical(self.name, list(self.choices)))
        return value_of(self.name, self.choices[0])

    def corners(self) -> list[Any]:
        """The values that bound what a trial may draw: a range's ends, every choice."""
        if self.is_range:
            return [self.low, self.high]
        return [value_of(self.name, c) for c in self.choices]


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]

    @property
    def texts(self) -> list[str]:
        return [d.text for d in self.dimensions]

    @property
    def searched(self) -> list[Dimension]:
        return [d for d in self.dimensions if d.searched]

    def suggest(self, trial: Any) -> dict[str, Any]:
        return {d.name: d.suggest(trial) for d in self.dimensions}

    def settings(self, base: TrainSettings, values: dict[str, Any]) -> TrainSettings:
        """`base` with these values (dimension name -> value) put in."""
        return settings_with(base, values)


def field_name(name: str) -> str:
    """'batch-size' -> 'batch_size'; 'opt.weight-decay' -> 'opt.weight_decay'."""
    return name.strip().replace("-", "_")


def value_of(name: str, text: str) -> Any:
    """A choice's text as the option takes it: a number, widths, optimizer options, a name."""
    if name in NUMBERS:
        return _number(name, text, NUMBERS[name])
    if name.startswith("opt."):
        value = parse_value(text)
        if isinstance(value, str):
            raise SearchSpaceError(f"--param {name}={text}: an optimizer option takes a number "
                                   f"or true/false")
        return value
    if name in TEXTS:
        return TEXTS[name](text)
    return text


def _number(name: str, text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise SearchSpaceError(f"--param {name}: {text!r} is not {what}") from None
    if not math.isfinite(value):
        raise SearchSpaceError(f"--param {name}: {text!r} is not a finite number")
    return value


def parse_param(text: str) -> Dimension:
    """One `--param NAME=SPEC` (see the module's docstring)."""
    raw_name, sep, spec = text.partition("=")
    name = field_name(raw_name)
    if not sep or not name or not spec.strip():
        raise SearchSpaceError(f"--param {text!r}: write NAME=VALUE, NAME=LOW..HIGH[:log] or "
                               f"NAME=A|B, such as lr=1e-4..0.1:log")
    spec = spec.strip()
    if name in NOT_SEARCHED:
        raise SearchSpaceError(f"--param {text}: {name} is not searched; it is set by "
                               f"{NOT_SEARCHED[name]}")
    numeric = name in NUMBERS or name.startswith("opt.") or name == "hidden"
    if not (numeric or name in REGISTERED or name in NAMED or name in TEXTS):
        raise SearchSpaceError(f"--param {text}: unknown option {name!r}; accepted: "
                               f"{', '.join(ACCEPTED)}")
    if name.startswith("opt.") and not name[4:].isidentifier():
        raise SearchSpaceError(f"--param {text}: write opt.KEY with an optimizer option's name, "
                               f"such as opt.weight_decay")
    if ".." in spec and numeric:
        return _range(name, text, spec)
    choices = tuple(c.strip() for c in spec.split("|"))
    if any(not c for c in choices):
        raise SearchSpaceError(f"--param {text}: an empty choice; write A|B|C")
    if len(set(choices)) != len(choices):
        raise SearchSpaceError(f"--param {text}: a choice is given twice")
    for choice in choices:
        value_of(name, choice)  # every choice reads as the option's kind
        if name in NAMED and choice not in NAMED[name]:
            raise SearchSpaceError(f"--param {text}: {name} {choice!r} is not one of "
                                   f"{', '.join(NAMED[name])}")
    return Dimension(name, text, choices=choices)


def _range(name: str, text: str, spec: str) -> Dimension:
    body, _, scale = spec.partition(":")
    if scale not in ("", "log"):
        raise SearchSpaceError(f"--param {text}: unknown scale {scale!r}; write LOW..HIGH or "
                               f"LOW..HIGH:log")
    low_text, _, high_text = body.partition("..")
    integer = NUMBERS.get(name) is int or name == "hidden"
    if name.startswith("opt."):  # an optimizer option: integers when both ends are
        integer = all(isinstance(parse_value(t.strip()), int) for t in (low_text, high_text))
    kind = int if integer else float
    low, high = (_number(name, t.strip(), kind) for t in (low_text, high_text))
    if not low < high:
        raise SearchSpaceError(f"--param {text}: empty range ({low:g} is not below {high:g}); "
                               f"write LOW..HIGH with LOW < HIGH, or {name}=VALUE to fix it")
    if scale == "log" and low <= 0:
        raise SearchSpaceError(f"--param {text}: a log range needs LOW > 0, got {low:g}")
    return Dimension(name, text, low=low, high=high, log=scale == "log", integer=integer)


def parse_space(texts: list[str]) -> SearchSpace:
    """Every `--param`, parsed once; each option at most once; something to search."""
    dimensions = tuple(parse_param(t) for t in texts)
    seen: dict[str, str] = {}
    for d in dimensions:
        if d.name in seen:
            raise SearchSpaceError(f"--param {d.text}: {d.name} is given twice (also {seen[d.name]})")
        seen[d.name] = d.text
    if "layers" in seen and ({"hidden", "act", "depth"} & seen.keys()):
        other = sorted({"hidden", "act", "depth"} & seen.keys())[0]
        raise SearchSpaceError(f"--param {seen['layers']}: layers is the whole network, so "
                               f"{other} would be ignored; search one or the other")
    if not any(d.searched for d in dimensions):
        raise SearchSpaceError("nothing to search: give at least one --param with a range or "
                               "choices, such as --param lr=1e-4..0.1:log")
    return SearchSpace(dimensions)


def settings_with(base: TrainSettings, values: dict[str, Any]) -> TrainSettings:
    """`base` with searched values: fields by name, `opt.KEY` into the optimizer options,
    `depth` x the `hidden` width (an integer hidden is one width for every layer)."""
    changes = {k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(TrainSettings)}}
    changes.pop("opt", None)
    options = dict(values["opt"]) if "opt" in values else dict(base.optimizer_args)
    options.update({k[4:]: v for k, v in values.items() if k.startswith("opt.")})
    changes["optimizer_args"] = tuple(sorted(options.items()))
    hidden = values.get("hidden", base.hidden)
    if isinstance(hidden, int):  # one width for every hidden layer, as many as `depth`
        changes["hidden"] = (hidden,) * values.get("depth", len(base.hidden))
    elif "depth" in values:
        changes["hidden"] = (hidden[0],) * values["depth"]
    if values.get("layers") is not None:  # the stack is the whole network
        changes["act"] = changes["hidden"] = None
    try:
        return dataclasses.replace(base, **changes)
    except SettingsError as e:
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        raise SearchSpaceError(f"--param values {shown}: {e}") from None


def check_names(space: SearchSpace, registry: Any) -> None:
    """Every registered name a choice gives (activations, losses, initializers, optimizers,
    the names in a stack) is known to the registry: else its one-line error, with the text."""
    for d in space.dimensions:
        for choice in d.choices:
            try:
                if d.name in REGISTERED:
                    registry.get(REGISTERED[d.name], choice)
                elif d.name == "layers":
                    parse_layers(choice, registry)
            except NNError as e:  # an unknown name: its did-you-mean line, with the text
                raise SearchSpaceError(f"--param {d.text}: {e}") from None
