"""What a playground tab asks the server to train: parsed, checked and bounded.

The page sends its whole configuration as one JSON object (the same keys its URL holds).
`parse_config` turns it into a `PlaygroundConfig` or raises `ConfigError` with one line
naming the bad value and what is accepted; the app answers that as a 400 JSON error.
The limits below are stated on the page (`/api/choices`) and in the README, and enforced here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from core.errors import SettingsError
from core.training.settings import TrainSettings, parse_widths

# Limits a request may not pass (one server trains for every tab at once).
LIMITS = {
    "max_points": 5000,  # data set size, train and test together
    "min_points": 20,
    "max_width": 256,  # widest hidden layer (hidden widths and linear:out= in the layers text)
    "max_hidden_layers": 8,
    "max_layers_text": 400,  # characters of the layers text
    "max_parameters": 100_000,  # weights of the whole network
    "max_grid": 200,  # heat map cells per side
    "min_grid": 10,
    "max_lr": 10.0,
    "max_noise": 1.0,
    "max_epochs_per_second": 2000,  # a tab trains at most this fast, whatever the network
    "max_sessions": 8,  # tabs training at once
    "max_body_bytes": 16_384,  # request bodies
}


class ConfigError(SettingsError):
    """A playground request the server refuses (400)."""


@dataclass(frozen=True)
class PlaygroundConfig:
    """One tab's run. The keys are the page's URL keys."""

    data: str = "disk"  # registered 2-D data set
    noise: float = 0.0  # the data set's noise, where it has one
    size: int = 1000  # points, train and test together
    ratio: float = 0.5  # fraction of the points used for training
    hidden: str = "8,8"  # hidden widths, comma-separated ("" for none) when layers is empty
    act: str = "tanh"  # activation after each hidden layer
    layers: str = ""  # the whole network as `--layers` text; replaces hidden and act
    loss: str = "bce"
    init: str = "xavier"
    optimizer: str = "adam"
    lr: float = 0.03
    batch: int = 10  # samples per gradient step
    seed: int = 0  # draws the data, the weights and the shuffling
    grid: int = 100  # heat map cells per side

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def settings(self, epochs: int = 1) -> TrainSettings:
        """The framework's settings of this run after `epochs` epochs (constant rate)."""
        n_train = self.n_train
        hidden = parse_widths(self.hidden) if self.hidden.strip() else ()
        layers = self.layers.strip() or None
        if layers is None and not hidden:  # no hidden layer: a linear model
            layers = f"linear:out=1"
        return TrainSettings(
            act=self.act, loss=self.loss, init=self.init, optimizer=self.optimizer,
            hidden=hidden or (1,), epochs=epochs, lr=self.lr, batch_size=self.batch,
            seed=self.seed, n_train=n_train, n_test=self.size - n_train, layers=layers,
            schedule="constant",
        )

    @property
    def n_train(self) -> int:
        return min(self.size - 1, max(1, round(self.size * self.ratio)))


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
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return number


def _check_bounds(c: PlaygroundConfig) -> None:
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
    if len(c.layers) > limit["max_layers_text"]:
        raise ConfigError(
            f"layers must be at most {limit['max_layers_text']} characters, got {len(c.layers)}"
        )
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
