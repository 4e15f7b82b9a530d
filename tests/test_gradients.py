"""Every built-in module and loss against torch.autograd in float64.

Forward and backward are asserted separately, with a random upstream gradient, plus the
edge cases: ReLU at exactly 0, sigmoid and cross-entropy at |x| = 50.
"""

import pytest
import torch
import torch.nn.functional as F

from core import StateError

TIGHT = dict(rtol=1e-12, atol=1e-14)
ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}
LOSSES = {
    "mse": F.mse_loss,
    "bce": F.binary_cross_entropy_with_logits,
}


def autograd_of(fn, x, upstream):
    x = x.detach().clone().requires_grad_(True)
    out = fn(x)
    out.backward(upstream)
    return out.detach(), x.grad


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 25)])
def test_activation_matches_autograd(registry, gen, name, shape):
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 3
    upstream = torch.randn(shape, generator=gen, dtype=torch.float64)
    expected_out, expected_grad = autograd_of(ACTIVATIONS[name], x, upstream)

    module = registry.create("activation", name)
    torch.testing.assert_close(module.forward(x), expected_out, **TIGHT)
    torch.testing.assert_close(module.backward(upstream), expected_grad, **TIGHT)
    assert module.parameters() == []


def test_relu_at_exactly_zero_has_zero_gradient_like_torch(registry):
    x = torch.tensor([[-1.0, 0.0, 0.0, 2.0]], dtype=torch.float64)
    upstream = torch.tensor([[5.0, 7.0, -3.0, 11.0]], dtype=torch.float64)
    _, expected = autograd_of(torch.relu, x, upstream)
    relu = registry.create("activation", "relu")
    out = relu.forward(x)
    assert torch.equal(out, torch.tensor([[0.0, 0.0, 0.0, 2.0]], dtype=torch.float64))
    assert torch.equal(relu.backward(upstream), expected)
    assert torch.equal(expected, torch.tensor([[0.0, 0.0, 0.0, 11.0]], dtype=torch.float64))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_at_infinities_matches_torch(registry, name):
    """relu(-inf) is 0 as max(x, 0) says, not -inf * 0 = NaN; tanh and sigmoid saturate."""
    inf = float("inf")
    x = torch.tensor([[-inf, -1.0, 0.0, 1.0, inf]], dtype=torch.float64)
    upstream = torch.tensor([[2.0, 3.0, 5.0, 7.0, 11.0]], dtype=torch.float64)
    expected_out, expected_grad = autograd_of(ACTIVATIONS[name], x, upstream)
    module = registry.create("activation", name)
    out = module.forward(x)
    assert not out.isnan().any(), out
    assert torch.equal(out, expected_out)
    torch.testing.assert_close(module.backward(upstream), expected_grad, **TIGHT)


@pytest.mark.parametrize("value", [-50.0, 50.0, -1000.0, 1000.0])
def test_sigmoid_saturated_is_finite_and_correct(registry, value):
    x = torch.full((3, 1), value, dtype=torch.float64)
    upstream = torch.ones_like(x)
    expected_out, expected_grad = autograd_of(torch.sigmoid, x, upstream)
    sigmoid = registry.create("activation", "sigmoid")
    out, grad = sigmoid.forward(x), sigmoid.backward(upstream)
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(out, expected_out, **TIGHT)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-20)


@pytest.mark.parametrize("batch", [1, 10, 33])
@pytest.mark.parametrize(("fan_in", "fan_out"), [(2, 25), (25, 1)])
def test_linear_matches_autograd(registry, gen, batch, fan_in, fan_out):
    layer = registry.create(
        "layer", "linear", in_features=fan_in, out_features=fan_out,
        init=registry.create("initializer", "xavier"), generator=gen, dtype=torch.float64,
    )
    layer.bias.value.normal_(generator=gen)  # a non-zero bias, so a wrong sign would show
    x = torch.randn(batch, fan_in, generator=gen, dtype=torch.float64)
    upstream = torch.randn(batch, fan_out, generator=gen, dtype=torch.float64)

    w = layer.weight.value.clone().requires_grad_(True)
    b = layer.bias.value.clone().requires_grad_(True)
    xr = x.clone().requires_grad_(True)
    expected = F.linear(xr, w.T, b)  # ours stores W as (in, out); torch as (out, in)
    expected.backward(upstream)

    torch.testing.assert_close(layer.forward(x), expected.detach(), **TIGHT)
    torch.testing.assert_close(layer.backward(upstream), xr.grad, **TIGHT)
    torch.testing.assert_close(layer.weight.grad, w.grad, **TIGHT)
    torch.testing.assert_close(layer.bias.grad, b.grad, **TIGHT)


def test_linear_parameter_gradients_accumulate_until_zeroed(registry, gen):
    from core import zero_grad

    layer = registry.create(
        "layer", "linear", in_features=3, out_features=2,
        init=registry.create("initializer", "he"), generator=gen, dtype=torch.float64,
    )
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    g = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    layer.forward(x)
    layer.backward(g)
    once = layer.weight.grad.clone()
    layer.forward(x)
    layer.backward(g)
    torch.testing.assert_close(layer.weight.grad, 2 * once, **TIGHT)
    zero_grad(layer)
    assert not layer.weight.grad.any() and not layer.bias.grad.any()


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("shape", [(1, 1), (10, 1), (17, 3)])
def test_loss_matches_autograd(registry, gen, name, shape):
    prediction = torch.randn(shape, generator=gen, dtype=torch.float64) * 2
    target = (torch.rand(shape, generator=gen, dtype=torch.float64) > 0.5).double()
    reference = prediction.clone().requires_grad_(True)
    expected = LOSSES[name](reference, target)
    expected.backward()

    loss = registry.create("loss", name)
    value = loss.forward(prediction, target)
    assert value.dim() == 0
    torch.testing.assert_close(value, expected.detach(), **TIGHT)
    torch.testing.assert_close(loss.backward(), reference.grad, **TIGHT)


@pytest.mark.parametrize("logit", [-50.0, 50.0, -1000.0, 1000.0])
@pytest.mark.parametrize("label", [0.0, 1.0])
def test_cross_entropy_at_extreme_logits_is_finite_and_correct(registry, logit, label):
    prediction = torch.full((4, 1), logit, dtype=torch.float64)
    target = torch.full((4, 1), label, dtype=torch.float64)
    reference = prediction.clone().requires_grad_(True)
    expected = F.binary_cross_entropy_with_logits(reference, target)
    expected.backward()

    loss = registry.create("loss", "bce")
    value, grad = loss.forward(prediction, target), loss.backward()
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    torch.testing.assert_close(value, expected.detach(), **TIGHT)
    torch.testing.assert_close(grad, reference.grad, rtol=1e-12, atol=1e-20)
    # A wrong label at |x| = 50 costs about |x|; a right one almost nothing.
    wrong = (logit > 0) != (label > 0.5)
    assert value.item() == pytest.approx(abs(logit) if wrong else 0.0, abs=1e-20)


@pytest.mark.parametrize(
    ("kind", "name"),
    [("activation", "relu"), ("activation", "tanh"), ("activation", "sigmoid")],
)
def test_backward_before_forward_is_a_clear_error(registry, kind, name):
    with pytest.raises(StateError, match="before forward"):
        registry.create(kind, name).backward(torch.ones(1, 1))


def test_linear_and_losses_backward_before_forward_is_a_clear_error(registry, gen):
    layer = registry.create(
        "layer", "linear", in_features=2, out_features=1,
        init=registry.create("initializer", "he"), generator=gen,
    )
    with pytest.raises(StateError, match="before forward"):
        layer.backward(torch.ones(1, 1))
    for name in LOSSES:
        with pytest.raises(StateError, match="before forward"):
            registry.create("loss", name).backward()
