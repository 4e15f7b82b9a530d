"""The authoring kit (nn_testing) passes every built-in and catches planted mistakes."""

import pytest
import torch

from core.network.protocols import Parameter
from core.plugin.registry import default_registry
from nn_testing import CheckFailed, check_initializer, check_loss, check_module
from plugins.activations import Tanh
from plugins.linear import Linear
from plugins.losses import MSELoss

REGISTRY = default_registry()


# Layers that take images get an image; the rest rows of features. Arguments a layer needs.
IMAGE_LAYERS = {"conv2d": dict(out_channels=2, kernel_size=3, padding=2),
                "conv_transpose2d": dict(out_channels=2, kernel_size=3, stride=2),
                "maxpool2d": dict(kernel_size=2), "avgpool2d": dict(kernel_size=2),
                "upsample": {}, "flatten": {}, "batchnorm": {}}
# Layers of sequences get (time, width) samples (an embedding: `time` token ids).
SEQUENCE_LAYERS = {"embedding": ((5,), dict(vocab=7, width=6)), "position": ((5, 6), {}),
                   "attention": ((5, 6), dict(heads=2))}
# Losses whose target is not one 0/1 value per output (checked in their own tests).
OWN_TARGETS = {"token_cross_entropy": "tests/test_sequence_layers.py"}


# A composite layer (transformer_block, gpt) is a stack text: tests/test_blocks.py checks
# the networks it writes.
MODULES = [e.name for e in REGISTRY.entries("layer") + REGISTRY.entries("activation")
           if not getattr(e.factory, "composite", False)]


@pytest.mark.parametrize("name", MODULES)
def test_kit_passes_every_builtin_module(name):
    if name in IMAGE_LAYERS:
        check_module(name, registry=REGISTRY, in_shape=(3, 5, 6), **IMAGE_LAYERS[name])
    elif name in SEQUENCE_LAYERS:
        shape, args = SEQUENCE_LAYERS[name]
        check_module(name, registry=REGISTRY, in_shape=shape, **args)
    else:
        check_module(name, registry=REGISTRY)


@pytest.mark.parametrize("name", [n for n in REGISTRY.names("loss") if n not in OWN_TARGETS])
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


# -- gradients at random parameter values, and the runs path ---------------------------
from plugin_layernorm import LayerNorm, LayerNormNoGain  # noqa: E402  (tests/ is on sys.path)


@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_kit_passes_a_correct_layernorm(eps):
    check_module(LayerNorm, eps=eps, in_features=5)


def test_kit_catches_a_layernorm_backward_that_forgets_the_gain():
    # The gain starts at 1, where the mistake changes nothing: only moved parameters show it.
    with pytest.raises(CheckFailed, match=r"input gradient vs autograd \(batch \d+, random parameters"):
        check_module(LayerNormNoGain, in_features=5)


class Scale:
    """The README's Scale layer, with the input gradient forgetting the scale."""

    def __init__(self, in_features: int, start: float = 1.0, dtype=None):
        self.out_features = in_features
        self.scale = Parameter.of(torch.full((in_features,), start, dtype=dtype), "scale")

    def forward(self, x):
        self.input = x
        return x * self.scale.value

    def backward(self, grad_output):
        self.scale.grad += (grad_output * self.input).sum(dim=0)
        return grad_output  # the planted mistake: right only while the scale is 1

    def parameters(self):
        return [self.scale]


def test_kit_catches_a_mistake_hidden_by_the_initial_values():
    with pytest.raises(CheckFailed, match="random parameters"):
        check_module(Scale, start=1.0)


class LayerNormRunsMixed(LayerNorm):
    """Right for one run; with runs, every run's gain gradient is the sum over all runs."""

    def backward(self, grad_output):
        xhat, _ = self.cache
        gain_grad = self.gain.grad.clone()
        grad_input = super().backward(grad_output)
        flat = (grad_output * xhat).reshape(-1, xhat.shape[-1]).sum(dim=0)  # (features,)
        self.gain.grad.copy_(gain_grad + flat)  # broadcast over the runs: the mistake
        return grad_input


def test_kit_checks_the_runs_path_of_a_component_that_supports_runs():
    check_module(LayerNormRunsMixed, in_features=5, runs=None)  # one run: right
    with pytest.raises(CheckFailed, match=r"gain gradient vs autograd \(3 runs, batch \d+"):
        check_module(LayerNormRunsMixed, in_features=5)


class RunsIgnored(Linear):
    """Declares supports_runs, then builds one layer whatever `runs` says."""

    def __init__(self, in_features, out_features, init, generator=None, dtype=None, runs=None):
        super().__init__(in_features, out_features, init, generator, dtype)


def test_kit_catches_parameters_without_a_run_dimension():
    with pytest.raises(CheckFailed, match="run dimension"):
        check_module(RunsIgnored, out_features=2)


def test_kit_runs_path_matches_each_run_to_the_single_layer():
    # a correct run-batched layer passes, and so does an activation (no `runs` argument)
    check_module(Linear, out_features=2, runs=4)
    check_module(Tanh, runs=2)
