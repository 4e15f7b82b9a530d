"""The package's own tests: nn-scratch's authoring kit over each component, then a run."""

import pytest

from core import TrainSettings, load_registry, train
from nn_testing import check_dataset, check_module
from nn_scratch_extras import PReLU, Swish, checkerboard


@pytest.mark.parametrize("alpha", [0.25, 0.0, -0.5])
def test_prelu_passes_the_kit(alpha):
    check_module(PReLU, alpha=alpha, in_features=5)


@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_swish_passes_the_kit(beta):
    check_module(Swish, beta=beta)


def test_the_installed_entry_point_registers_both():
    registry = load_registry(["nn_scratch_extras"])  # also found without it, when installed
    assert registry.get("layer", "prelu").factory is PReLU
    assert registry.get("activation", "swish").factory is Swish
    check_module("prelu", registry=registry)


def test_a_network_with_them_trains():
    registry = load_registry(["nn_scratch_extras"])
    settings = TrainSettings(layers="linear:out=16,prelu,linear:out=16,swish,linear:out=1",
                             epochs=30, seed=0)
    result = train(settings, registry)
    assert result.losses[-1] < result.losses[0]
    assert result.test_error < 0.3


@pytest.mark.parametrize("squares", [2, 4])
def test_checkerboard_passes_the_kit(squares):
    check_dataset(checkerboard, squares=squares, n=300)


def test_a_network_learns_the_checkerboard():
    registry = load_registry(["nn_scratch_extras"])
    assert registry.get("dataset", "checkerboard").factory is checkerboard
    settings = TrainSettings(data="checkerboard:squares=2", hidden=(32, 32), act="relu",
                             epochs=100, seed=0)
    result = train(settings, registry)
    assert result.test_error < 0.1 and result.dataset["class_names"] == ["white", "black"]
