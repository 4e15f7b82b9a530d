"""What a playground tab asks the server to train: parsed, checked and bounded.

The page sends its whole configuration as one JSON object (the same keys its URL holds).
`parse_config` turns it into a `PlaygroundConfig` or raises `ConfigError` with one line
naming the bad value and what is accepted; the app answers that as a 400 JSON error.
The limits below are stated on the page (`/api/choices`) and in the README, and enforced here.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from core.data.dataset import CONTEXT as DATA_CONTEXT
from core.errors import SettingsError
from core.keyvalue import parse_pair
from core.network.stack import match_key
from core.training.settings import TrainSettings, parse_widths

# Limits a request may not pass (one server trains for every tab at once).
LIMITS = {
    "max_points": 5000,  # data set size, train and test together
    "min_points": 20,
    "max_width": 256,  # widest hidden layer (hidden widths and linear:out= in the layers text)
    "max_hidden_layers": 8,
    "max_layers_text": 400,  # characters of the layers text (and of the data set's options)
    "max_parameters": 100_000,  # weights of the whole network
    "max_run_megabytes": 128,  # what a run may hold: activations, weights, data (budget.py)
    "max_grid": 200,  # heat map cells per side
    "min_grid": 10,
    "max_lr": 10.0,
    "max_noise": 1.0,
    "max_option": 1000,  # a data set's other numeric options, in absolute value
    "max_epochs_per_second": 2000,  # a tab trains at most this fast, whatever the network
    "max_sessions": 8,  # tabs training at once
    "max_streams_per_run": 2,  # event streams open on one run
    "max_idle_seconds": 1800,  # a run with no command this long is stopped
    "max_run_seconds": 4 * 3600,  # and any run after this long
    "max_body_bytes": 16_384,  # request bodies
}
# The training controls' limits (issue 25: penalty, speed).
LIMITS.update({
    "max_rate": 10.0,  # the penalty's rate
    "max_speed": 1000,  # epochs per frame
})
PENALTIES = ("none", "l1", "l2")  # the penalty on the weight matrices (core/training/penalty.py)


class ConfigError(SettingsError):
    """A playground request the server refuses (400)."""


@dataclass(frozen=True)
class PlaygroundConfig:
    """One tab's run. The keys are the page's URL keys."""

    data: str = "spiral"  # a registered 2-D classification data set
    options: str = ""  # its other options as `--data` writes them, e.g. "arms=3"
    noise: float = 0.2  # the data set's noise, where it has one (0 where it has none)
    size: int = 1000  # points, train and test together
    ratio: float = 0.5  # fraction of the points used for training
    hidden: str = "16,16"  # hidden widths, comma-separated ("" for none) when layers is empty
    act: str = "tanh"  # activation after each hidden layer
    layers: str = ""  # the whole network as `--layers` text; replaces hidden and act
    loss: str = "cross_entropy"  # any number of classes (bce: two)
    init: str = "xavier"
    optimizer: str = "adam"
    lr: float = 0.03
    batch: int = 10  # samples per gradient step
    seed: int = 0  # draws the data, the weights and the shuffling
    grid: int = 100  # heat map cells per side
    # -- training controls: the penalty and the speed train; the page alone draws the rest
    penalty: str = "none"  # l1 or l2: `nn-cli train --l1/--l2 RATE` on the weight matrices
    rate: float = 0.0  # the penalty's rate
    speed: int = 0  # epochs per frame (0: as many as the server trains between frames)
    logscale: bool = False  # the loss chart on a log scale (the page's; checked here)
    discretize: bool = False  # the output drawn as classes or bands (the page's; checked here)
    # Inside the network (playground/inspection.py): views the page switches without a reset.
    diagram: bool = True  # the network diagram: each unit's heat map, the weights as lines
    onestep: bool = False  # freeze after each batch and show its backward pass

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def settings(self, takes: Mapping[str, inspect.Parameter], epochs: int = 1) -> TrainSettings:
        """The framework's settings of this run after `epochs` epochs (constant rate).

        `takes` is the data set factory's parameters (`constructor_parameters`): `n` and
        `noise` go to it when it has them; a data set with its own test split (the disk)
        gets n_train and n_test; the options text is read against it (`parse_options`).
        """
        n_train = self.n_train
        layers = self.layers.strip() or None
        # The page keeps its widths and activation while a layers text replaces them; the
        # framework refuses both at once, so they go as its defaults (which it ignores).
        act, hidden = self.act, parse_widths(self.hidden) if self.hidden.strip() else ()
        if layers or not hidden:  # a linear model gets its layers once the width is known
            act, hidden = TrainSettings.act, TrainSettings.hidden
        return TrainSettings(
            act=act, loss=self.loss, init=self.init, optimizer=self.optimizer,
            hidden=hidden, epochs=epochs, lr=self.lr, batch_size=self.batch,
            seed=self.seed, n_train=n_train, n_test=self.size - n_train,
            layers=layers, schedule="constant",
            data=self.data_text(takes), test_fraction=round(1 - n_train / self.size, 12),
            **self.penalty_settings(),
        )

    def penalty_settings(self) -> dict[str, float]:
        """The framework's l1 and l2 of the chosen penalty at its rate."""
        return {self.penalty: self.rate} if self.penalty in ("l1", "l2") else {}

    def data_text(self, takes: Mapping[str, inspect.Parameter]) -> str:
        """The `--data` text: name, then `n`, `noise` and the other options."""
        options = parse_options(self.options, takes)
        if self.noise and "noise" not in takes:
            raise ConfigError(f"data set {self.data!r} has no noise; set noise to 0")
        given = {"n": self.size, "noise": self.noise}
        options = {**{k: v for k, v in given.items() if k in takes}, **options}
        text = ",".join(f"{key}={value}" for key, value in options.items())
        return f"{self.data}:{text}" if text else self.data

    @property
    def linear_model(self) -> bool:
        """No hidden layer and no layers text: a linear model of the inputs."""
        return not self.layers.strip() and not self.hidden.strip()

    @property
    def n_train(self) -> int:
        return min(self.size - 1, max(1, round(self.size * self.ratio)))


def parse_options(text: str, takes: Mapping[str, inspect.Parameter]) -> dict[str, Any]:
    """A data set's options text ("arms=3") read against its factory's own parameters.

    Each key is resolved to the parameter it names (a unique prefix, as `--data` allows)
    before any check, and each value must be of its default's type: an integer, a finite
    number or true/false, at most LIMITS["max_option"] in size. Text values (a path above
    all) are refused: the page offers no files. `n` and `noise` have their own fields.
    """
    settable = [name for name, p in takes.items()
                if name not in DATA_CONTEXT and p.kind != p.VAR_KEYWORD]
    options: dict[str, Any] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        if (parsed := parse_pair(pair)) is None:
            raise ConfigError(f"options: {pair!r} is not key=value; write e.g. "
                              f"{settable[-1] if settable else 'arms'}=3")
        key, value = parsed
        full, problem = match_key(key, settable, takes_any=False)
        if problem:
            raise ConfigError(f"options: {key!r} {problem} option of this data set; its options "
                              f"are {', '.join(settable) or 'none'}")
        if full in ("n", "noise"):
            raise ConfigError(f"options: give {full} in its own field, not as {key}=...")
        if full in options:
            raise ConfigError(f"options: {full} is given twice")
        options[full] = _option_value(full, value, takes[full].default)
    return options


def _option_value(key: str, value: Any, default: Any) -> Any:
    """`value` if it is of `default`'s kind and within the limit, else a ConfigError."""
    bound = LIMITS["max_option"]
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"options: {key} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        kind, fits = "an integer", isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        kind = "a number"
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
        fits = fits and math.isfinite(value)
    else:  # text (a path, a column name) or no default: nothing the page offers
        raise ConfigError(f"options: {key} is not a number option; the playground sets only "
                          f"numbers and true/false")
    if not fits:
        raise ConfigError(f"options: {key} must be {kind} (its default is {default!r}), "
                          f"got {value!r}")
    if abs(value) > bound:
        raise ConfigError(f"options: {key} must be between -{bound} and {bound}, got {value!r}")
    return value


# What a page opened without a configuration shows: three spiral arms, one class each.
PAGE_DEFAULTS = {**asdict(PlaygroundConfig()), "options": "arms=3"}

_TYPES = {f.name: f.type for f in fields(PlaygroundConfig)}


def parse_config(body: Any) -> PlaygroundConfig:
    """A checked configuration from a request body (a JSON object of URL keys)."""
    if not isinstance(body, dict):
        raise ConfigError(f"the request body must be a JSON object of settings, got {type(body).__name__}")
    unknown = sorted(set(body) - set(_TYPES))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}; accepted: {', '.join(_TYPES)}")
    values = {key: _coerce(key, value) for key, value in body.items()}
    config = PlaygroundConfig(**values)
    _check_bounds(config)
    return config


def _coerce(key: str, value: Any) -> Any:
    kind = _TYPES[key]
    if kind == "bool":
        return parse_switch(key, value)
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be text, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{key} must be an integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):  # "x", or an integer of hundreds of digits
        raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return number


def parse_switch(key: str, value: Any) -> bool:
    """A switch from JSON (true/false) or from the URL's text ("true"/"false")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def _check_controls(c: PlaygroundConfig) -> None:
    """The training controls: a known penalty, its rate and the speed within their limits."""
    if c.penalty not in PENALTIES:
        raise ConfigError(f"penalty must be one of {', '.join(PENALTIES)}, got {c.penalty!r}")
    if not 0 <= c.rate <= LIMITS["max_rate"]:
        raise ConfigError(f"rate must be between 0 and {LIMITS['max_rate']}, got {c.rate!r}")
    if not 0 <= c.speed <= LIMITS["max_speed"]:
        raise ConfigError(f"speed must be between 0 (as fast as the server trains) and "
                          f"{LIMITS['max_speed']} epochs per frame, got {c.speed!r}")


def _check_bounds(c: PlaygroundConfig) -> None:
    _check_controls(c)
    limit = LIMITS
    ranges = [
        ("size", c.size, limit["min_points"], limit["max_points"]),
        ("grid", c.grid, limit["min_grid"], limit["max_grid"]),
        ("batch", c.batch, 1, c.size),
        ("noise", c.noise, 0.0, limit["max_noise"]),
    ]
    for key, value, low, high in ranges:
        if not low <= value <= high:
            raise ConfigError(f"{key} must be between {low} and {high}, got {value!r}")
    if not 0.05 <= c.ratio <= 0.95:
        raise ConfigError(f"ratio must be between 0.05 and 0.95, got {c.ratio!r}")
    if not 0 < c.lr <= limit["max_lr"]:
        raise ConfigError(f"lr must be above 0 and at most {limit['max_lr']}, got {c.lr!r}")
    for key in ("layers", "options"):
        if len(getattr(c, key)) > limit["max_layers_text"]:
            raise ConfigError(f"{key} must be at most {limit['max_layers_text']} characters, "
                              f"got {len(getattr(c, key))}")
    if not c.layers.strip() and c.hidden.strip():
        widths = parse_widths(c.hidden)
        if len(widths) > limit["max_hidden_layers"]:
            raise ConfigError(
                f"hidden may have at most {limit['max_hidden_layers']} layers, got {len(widths)}"
            )
        for width in widths:
            if not 1 <= width <= limit["max_width"]:
                raise ConfigError(
                    f"hidden widths must be between 1 and {limit['max_width']}, got {width}"
                )
