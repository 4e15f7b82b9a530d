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


# -- named checks: each can fail, all run, every failure reported by name -----------------
import dataclasses  # noqa: E402

from core.network.protocols import Parameter as _Parameter  # noqa: E402
from nn_testing import (  # noqa: E402
    Check,
    check_dataset,
    dataset_checks,
    initializer_checks,
    loss_checks,
    module_checks,
    run_checks,
)


class BiasGradMisshapen(Linear):
    def __init__(self, in_features, out_features, init, generator=None, dtype=None, runs=None):
        super().__init__(in_features, out_features, init, generator, dtype, runs=runs)
        self.bias.grad = torch.zeros((1, *self.bias.value.shape), dtype=self.bias.value.dtype)


class GradsNotCleared(Linear):
    """parameters() hands out copies: zero_grad clears the copies, not the gradients."""

    def parameters(self):
        return [_Parameter(p.value, p.grad.clone(), p.name) for p in super().parameters()]


class RunsScaled(Linear):
    """Consistent with itself (forward and backward agree), but with runs every run
    computes twice what the single layer computes."""

    def forward(self, x):
        return super().forward(x) * (2 if x.dim() == 3 else 1)

    def backward(self, grad_output):
        return super().backward(grad_output * (2 if grad_output.dim() == 3 else 1))


class RunsGradOverwritten(Linear):
    """Right for one run; with runs, a second backward replaces the gradients."""

    def backward(self, grad_output):
        if grad_output.dim() == 3:
            for p in super().parameters():
                p.grad.zero_()
        return super().backward(grad_output)


# One planted mistake per named check of a module; each must fail (at least) that check.
PLANTED_MODULES = {
    "parameter shapes": (BiasGradMisshapen, dict(out_features=2)),
    "gradients vs autograd at initial parameters": (InputGradOff, {}),
    "gradients vs autograd at random parameters": (Scale, dict(start=1.0)),
    "gradient accumulation": (GradOverwritten, dict(out_features=2)),
    "zero_grad": (GradsNotCleared, dict(out_features=2)),
    "determinism under a seed": (Unseeded, dict(out_features=2)),
    "runs: run dimension": (RunsIgnored, dict(out_features=2)),
    "runs: gradients vs autograd": (LayerNormRunsMixed, dict(in_features=5)),
    "runs: gradient accumulation": (RunsGradOverwritten, dict(out_features=2)),
    "runs: each run equals a single run": (RunsScaled, dict(out_features=2)),
}


def failed_names(results):
    return {r.check.name for r in results if not r.passed}


def test_every_named_check_of_a_module_has_a_planted_mistake_that_fails_it():
    names = [c.name for c in module_checks(Linear, out_features=2)]  # every check applies
    assert sorted(names) == sorted(PLANTED_MODULES)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", PLANTED_MODULES)
def test_each_named_module_check_can_fail(name):
    factory, args = PLANTED_MODULES[name]
    results = run_checks(module_checks(factory, **args))
    assert name in failed_names(results)
    with pytest.raises(CheckFailed) as info:
        check_module(factory, **args)
    assert f"- {name}: " in str(info.value)


def test_a_correct_layer_passes_every_check_and_each_is_named():
    results = check_module(Linear, out_features=2)  # returns the results when all pass
    assert [r.check.name for r in results] == [c.name for c in module_checks(Linear, out_features=2)]
    assert all(r.passed for r in results)


class TwoMistakes(Unseeded):
    """A wrong input gradient and weights that ignore the seed: two checks fail."""

    def backward(self, grad_output):
        return 2 * super().backward(grad_output)


def test_all_checks_run_and_every_failure_is_reported_by_name():
    with pytest.raises(CheckFailed) as info:
        check_module(TwoMistakes, out_features=2, runs=None)
    failed = [r.check.name for r in info.value.failures]
    assert "gradients vs autograd at initial parameters" in failed
    assert "determinism under a seed" in failed  # checked after the gradients failed
    message = str(info.value)
    total = len(module_checks(TwoMistakes, out_features=2, runs=None))
    assert message.startswith(f"TwoMistakes: {len(failed)} of {total} checks failed:")
    assert all(f"- {name}: TwoMistakes: check failed: " in message for name in failed)
    assert "input gradient vs autograd (batch 1)" in message


class BackwardRaises(Linear):
    def backward(self, grad_output):
        raise RuntimeError("planted")


def test_a_check_whose_component_raises_fails_and_the_others_still_run():
    results = run_checks(module_checks(BackwardRaises, out_features=2, runs=None))
    by_name = {r.check.name: r for r in results}
    assert "raised RuntimeError: planted" in by_name["gradients vs autograd at initial parameters"].message
    assert by_name["determinism under a seed"].passed and by_name["parameter shapes"].passed


@pytest.mark.parametrize("check", module_checks(Linear, out_features=2), ids=str)
def test_module_checks_run_one_by_one_as_test_cases(check):
    assert isinstance(check, Check) and str(check).startswith("Linear: ")
    check()


class ScoreVector(MSELoss):
    """Forgets the mean: a value per element, not a 0-dim loss."""

    def forward(self, prediction, target):
        super().forward(prediction, target)
        return (prediction - target) ** 2


def test_each_named_loss_check_can_fail():
    assert [c.name for c in loss_checks(MSELoss)] == ["scalar value", "prediction gradient vs autograd"]
    assert failed_names(run_checks(loss_checks(HalfMSE))) == {"prediction gradient vs autograd"}
    assert "scalar value" in failed_names(run_checks(loss_checks(ScoreVector)))


def test_each_named_initializer_check_can_fail():
    def misshapen(weight, fan_in, fan_out, generator):
        weight.resize_(fan_in * fan_out).normal_(generator=generator)

    def top_row_only(weight, fan_in, fan_out, generator):
        weight[0].normal_(generator=generator)

    def unseeded(weight, fan_in, fan_out, generator):
        weight.copy_(torch.randn(weight.shape, dtype=weight.dtype))

    names = [c.name for c in initializer_checks(lambda: unseeded)]
    assert names == ["shape", "finiteness", "determinism under a seed"]
    assert "shape" in failed_names(run_checks(initializer_checks(lambda: misshapen)))
    assert failed_names(run_checks(initializer_checks(lambda: top_row_only))) == {"finiteness"}
    assert failed_names(run_checks(initializer_checks(lambda: unseeded))) == {"determinism under a seed"}


def test_each_named_dataset_check_can_fail():
    from core import Dataset

    def dataset(name, x, y):
        return Dataset(name, "binary", x, y, ("a", "b"), (2,), ("0", "1"))

    def good(generator):
        return dataset("good", torch.rand(10, 2, generator=generator, dtype=torch.float64),
                       torch.arange(10) % 2)

    def bad_labels(generator):
        return dataset("bad", torch.rand(10, 2, generator=generator, dtype=torch.float64),
                       torch.arange(10))

    def one_class(generator):
        return dataset("one", torch.rand(10, 2, generator=generator, dtype=torch.float64),
                       torch.zeros(10, dtype=torch.long))

    def unseeded(generator):
        return dataset("u", torch.rand(10, 2, dtype=torch.float64), torch.arange(10) % 2)

    assert [c.name for c in dataset_checks(good)] == [
        "returns a Dataset", "contract", "classes", "determinism under a seed"]
    check_dataset(good)
    assert failed_names(run_checks(dataset_checks(lambda generator: [1, 2]))) == {"returns a Dataset"}
    assert "contract" in failed_names(run_checks(dataset_checks(bad_labels)))
    assert failed_names(run_checks(dataset_checks(one_class))) == {"classes"}
    assert failed_names(run_checks(dataset_checks(unseeded))) == {"determinism under a seed"}
