"""The authoring kit (nn_testing) passes every built-in and catches planted mistakes."""

import pytest
import torch

from core.plugin.registry import default_registry
from nn_testing import CheckFailed, check_initializer, check_loss, check_module
from plugins.activations import Tanh
from plugins.linear import Linear
from plugins.losses import MSELoss

REGISTRY = default_registry()


@pytest.mark.parametrize("name", REGISTRY.names("layer") + REGISTRY.names("activation"))
def test_kit_passes_every_builtin_module(name):
    check_module(name, registry=REGISTRY)


@pytest.mark.parametrize("name", REGISTRY.names("loss"))
def test_kit_passes_every_builtin_loss(name):
    check_loss(name, registry=REGISTRY)


@pytest.mark.parametrize("name", REGISTRY.names("initializer"))
def test_kit_passes_every_builtin_initializer(name):
    check_initializer(name, registry=REGISTRY)


class WeightGradOff(Linear):
    """Linear whose weight gradient is 1.5 times too large."""

    def backward(self, grad_output):
        self.weight.grad += 0.5 * self.input.mT @ grad_output  # the planted mistake
        return super().backward(grad_output)


def test_kit_catches_a_weight_gradient_off_by_a_factor():
    with pytest.raises(CheckFailed) as info:
        check_module(WeightGradOff, out_features=3)
    message = str(info.value)
    assert "weight gradient vs autograd" in message
    assert "0.5 relative" in message  # the factor 1.5 shows as 50% off


class InputGradOff(Tanh):
    def backward(self, grad_output):
        return 2 * super().backward(grad_output)


def test_kit_catches_a_wrong_input_gradient():
    with pytest.raises(CheckFailed, match="input gradient vs autograd"):
        check_module(InputGradOff)


class GradOverwritten(Linear):
    """Assigns the parameter gradients instead of adding to them."""

    def backward(self, grad_output):
        self.weight.grad.copy_(self.input.mT @ grad_output)
        self.bias.grad.copy_(grad_output.sum(dim=-2))
        return grad_output @ self.weight.value.mT


def test_kit_catches_gradients_that_do_not_accumulate():
    with pytest.raises(CheckFailed, match="accumulates over two backwards"):
        check_module(GradOverwritten, out_features=2)


class Unseeded(Linear):
    def __init__(self, in_features, out_features, init, dtype=None):
        super().__init__(in_features, out_features, init, None, dtype)  # ignores the seed


def test_kit_catches_weights_that_ignore_the_seed():
    with pytest.raises(CheckFailed, match="determinism under a seed"):
        check_module(Unseeded, out_features=2)


class HalfMSE(MSELoss):
    def backward(self):
        return super().backward() / 2


def test_kit_catches_a_wrong_loss_gradient():
    with pytest.raises(CheckFailed, match="prediction gradient vs autograd"):
        check_loss(HalfMSE)


def test_kit_catches_an_initializer_that_leaves_elements_unfilled_or_infinite():
    def top_row_only(weight, fan_in, fan_out, generator):
        weight[0].normal_(generator=generator)

    with pytest.raises(CheckFailed, match="finiteness"):
        check_initializer(lambda: top_row_only)  # the factory, as registered

    def unseeded(weight, fan_in, fan_out, generator):
        weight.copy_(torch.randn(weight.shape, dtype=weight.dtype))

    with pytest.raises(CheckFailed, match="determinism under a seed"):
        check_initializer(lambda: unseeded)


def test_kit_resolves_unknown_names_with_the_registry_message():
    with pytest.raises(KeyError, match="unknown layer 'linaer'"):
        check_module("linaer", registry=REGISTRY)
