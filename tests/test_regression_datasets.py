"""The regression sets the playground draws (plugins/regression_datasets.py): a curve over
one input and a surface over two, seeded, with the noise on the target; through the
library and through CliRunner."""

import math

import pytest
import torch

from core.data.dataset import DataError, build_dataset
from nn_testing import check_dataset
from test_cli import assert_one_line_error
from test_datasets import invoke, json_of


def build(registry, text: str, seed: int = 0):
    return build_dataset(registry, text, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["sine", "hills"])
def test_the_regression_sets_keep_the_contract(registry, name):
    check_dataset(name, registry=registry)


@pytest.mark.parametrize("name, features", [("sine", 1), ("hills", 2)])
def test_they_follow_their_seed_and_noise(registry, name, features):
    a, b, c = (build(registry, f"{name}:n=80", seed) for seed in (0, 0, 1))
    assert a.task == "regression" and a.input_shape == (features,)
    assert a.x_train.shape == (80, features) and a.y_train.shape == (80, 1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_train, c.x_train)
    assert a.x_train.abs().max() <= 3  # the inputs' square
    quiet, loud = build(registry, f"{name}:n=80,noise=0"), build(registry, f"{name}:n=80,noise=0.5")
    assert torch.equal(quiet.x_train, loud.x_train)  # the noise moves the targets only
    spread = (loud.y_train - quiet.y_train).std().item()
    assert 0.35 < spread < 0.65


def test_without_noise_the_targets_are_the_functions():
    from plugins.regression_datasets import hills, sine

    curve = sine(torch.Generator().manual_seed(3), n=50, noise=0)
    x = curve.x_train[:, 0]
    assert torch.allclose(curve.y_train[:, 0], torch.sin(2 * x) + x / 3, atol=0, rtol=0)
    surface = hills(torch.Generator().manual_seed(3), n=50, noise=0)
    p = surface.x_train
    hill = (-((p[:, 0] + 1) ** 2 + (p[:, 1] - 1) ** 2)).exp()
    valley = (-((p[:, 0] - 1) ** 2 + (p[:, 1] + 1) ** 2)).exp()
    assert torch.allclose(surface.y_train[:, 0], hill - valley, atol=1e-15)


@pytest.mark.parametrize("text, words", [
    ("sine:n=1", "n must be an integer >= 2, got 1"),
    ("hills:noise=-1", "noise must be a finite number >= 0, got -1"),
])
def test_bad_options_say_what_is_accepted(registry, text, words):
    with pytest.raises(DataError, match=words):
        build(registry, text)
    assert_one_line_error(invoke("train", "--data", text, "--epochs", "1"), words)


@pytest.mark.parametrize("name", ["sine", "hills"])
def test_nn_cli_train_fits_them_better_than_their_mean(name):
    data = build_dataset(__import__("core").default_registry(), f"{name}:noise=0.05",
                         generator=torch.Generator().manual_seed(0))
    spread = data.y_train.std().item()
    out = json_of("train", "--data", f"{name}:noise=0.05", "--epochs", "30")
    assert out["task"] == "regression" and out["settings"]["loss"] == "mse"  # its default
    assert out["test_error"] < 0.6 * spread and math.isfinite(out["metrics"]["r2"])
