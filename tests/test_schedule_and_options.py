"""The learning-rate schedule and the optimizer options reach the optimizer."""

import math

import pytest

from core import SettingsError, TrainSettings, hookimpl, train
from core.plugin.registry import default_registry
from core.training.schedule import SCHEDULES, cosine
from core.training.settings import parse_optimizer_args


def test_cosine_starts_at_lr_and_decays_towards_zero():
    lrs = [cosine(0.1, epoch, 10) for epoch in range(1, 11)]
    assert lrs[0] == 0.1
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.9)))
    assert SCHEDULES["constant"](0.1, 7, 10) == 0.1


class Spy:
    """Records the optimizer arguments and every learning rate it stepped with."""

    made: list = []

    def __init__(self, parameters, lr, momentum=0.0, nesterov=False):
        self.kwargs = {"lr": lr, "momentum": momentum, "nesterov": nesterov}
        self.lr, self.lrs = lr, []
        Spy.made.append(self)

    def step(self):
        self.lrs.append(self.lr)

    def zero_grad(self):
        pass


class SpyPlugin:
    @hookimpl
    def register_optimizers(self, register):
        register("spy", Spy)


@pytest.fixture
def spy_registry():
    registry = default_registry()
    registry.add_plugin(SpyPlugin())
    Spy.made.clear()
    return registry


def test_settings_options_and_schedule_reach_the_optimizer(spy_registry):
    settings = TrainSettings(optimizer="spy", optimizer_args={"momentum": 0.5, "nesterov": True},
                             lr=0.2, epochs=4, n_train=20, n_test=20, batch_size=10, hidden=(3,))
    train(settings, spy_registry)
    (spy,) = Spy.made
    assert spy.kwargs == {"lr": 0.2, "momentum": 0.5, "nesterov": True}
    expected = [cosine(0.2, e, 4) for e in range(1, 5) for _ in range(2)]  # 2 steps per epoch
    assert spy.lrs == expected


def test_constant_schedule_keeps_lr(spy_registry):
    settings = TrainSettings(optimizer="spy", schedule="constant", lr=0.2, epochs=3,
                             n_train=10, n_test=10, batch_size=10, hidden=(3,))
    train(settings, spy_registry)
    assert Spy.made[0].lrs == [0.2, 0.2, 0.2]


def test_an_option_the_optimizer_lacks_is_refused_naming_the_accepted(registry):
    settings = TrainSettings(optimizer="adam", optimizer_args={"momentum": 0.9}, epochs=1)
    with pytest.raises(SettingsError, match="'adam' has no option 'momentum'.*beta1, beta2, eps"):
        train(settings, registry)


def test_sgd_momentum_changes_training(registry):
    base = dict(optimizer="sgd", lr=0.05, epochs=2, n_train=100, n_test=100, hidden=(5,),
                batch_size=10)
    plain = train(TrainSettings(**base), registry)
    heavy = train(TrainSettings(**base, optimizer_args={"momentum": 0.9}), registry)
    assert plain.losses != heavy.losses


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("momentum=0.9", (("momentum", 0.9),)),
        ("nesterov=true, momentum=0.9", (("momentum", 0.9), ("nesterov", True))),
        ("beta1=0.8,eps=1e-6", (("beta1", 0.8), ("eps", 1e-6))),
    ],
)
def test_parse_optimizer_args(text, expected):
    assert parse_optimizer_args(text) == expected


@pytest.mark.parametrize("text", ["momentum", "momentum=fast", "=0.9", "momentum=nan"])
def test_bad_optimizer_args_are_refused(text):
    with pytest.raises(SettingsError, match="KEY=VALUE"):
        parse_optimizer_args(text)


def test_settings_store_options_sorted_and_hashable():
    a = TrainSettings(optimizer_args={"nesterov": True, "momentum": 0.9})
    b = TrainSettings(optimizer_args=(("momentum", 0.9), ("nesterov", True)))
    assert a == b and hash(a) == hash(b)
    assert a.to_dict()["optimizer_args"] == {"momentum": 0.9, "nesterov": True}
    with pytest.raises(SettingsError, match="optimizer_args"):
        TrainSettings(optimizer_args={"momentum": "fast"})
