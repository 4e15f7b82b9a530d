"""cross_entropy, mae and huber against torch.autograd in float64, forward and backward
separately; and a 10-class network trained 20 steps with ours and with torch.nn + torch.optim."""

import pytest
import torch
import torch.nn.functional as F

from core import StateError, build_mlp
from nn_testing import check_loss

TIGHT = dict(rtol=1e-12, atol=1e-14)


def autograd_of(fn, prediction):
    leaf = prediction.detach().clone().requires_grad_(True)
    value = fn(leaf)
    value.backward()
    return value.detach(), leaf.grad


@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("classes", [2, 10])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_cross_entropy_matches_torch_functional(registry, gen, batch, classes, scale):
    logits = torch.randn(batch, classes, generator=gen, dtype=torch.float64) * scale
    labels = torch.randint(classes, (batch,), generator=gen)
    one_hot = F.one_hot(labels, classes).double()  # (batch, classes)
    expected, expected_grad = autograd_of(lambda z: F.cross_entropy(z, labels), logits)

    loss = registry.create("loss", "cross_entropy")
    value = loss.forward(logits, one_hot)
    grad = loss.backward()
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    torch.testing.assert_close(value, expected, **TIGHT)
    torch.testing.assert_close(grad, expected_grad, **TIGHT)
    # softmax minus one-hot, averaged over the batch
    torch.testing.assert_close(grad, (torch.softmax(logits, -1) - one_hot) / batch, **TIGHT)


def test_ce_is_an_alias_of_cross_entropy(registry):
    assert registry.get("loss", "ce").factory is registry.get("loss", "cross_entropy").factory


def test_cross_entropy_with_class_probabilities_matches_torch(registry, gen):
    logits = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    target = torch.softmax(torch.randn(5, 4, generator=gen, dtype=torch.float64), -1)
    expected, expected_grad = autograd_of(lambda z: F.cross_entropy(z, target), logits)
    loss = registry.create("loss", "cross_entropy")
    torch.testing.assert_close(loss.forward(logits, target), expected, **TIGHT)
    torch.testing.assert_close(loss.backward(), expected_grad, **TIGHT)


@pytest.mark.parametrize(("name", "fn"), [
    ("mae", F.l1_loss),
    ("huber", F.huber_loss),
])
@pytest.mark.parametrize("shape", [(1, 1), (64, 1), (7, 3)])
def test_regression_losses_match_torch(registry, gen, name, fn, shape):
    prediction = torch.randn(shape, generator=gen, dtype=torch.float64) * 2
    target = torch.randn(shape, generator=gen, dtype=torch.float64)
    expected, expected_grad = autograd_of(lambda p: fn(p, target), prediction)
    loss = registry.create("loss", name)
    torch.testing.assert_close(loss.forward(prediction, target), expected, **TIGHT)
    torch.testing.assert_close(loss.backward(), expected_grad, **TIGHT)


@pytest.mark.parametrize(("name", "fn"), [
    ("mae", F.l1_loss),
    ("huber", F.huber_loss),
])
def test_regression_losses_at_the_kinks_match_torch(registry, name, fn):
    """An exact fit (MAE's kink) and |diff| exactly delta (Huber's seam)."""
    prediction = torch.tensor([[0.0], [1.0], [-1.0], [2.5]], dtype=torch.float64)
    target = torch.tensor([[0.0], [0.0], [0.0], [0.0]], dtype=torch.float64)
    expected, expected_grad = autograd_of(lambda p: fn(p, target), prediction)
    loss = registry.create("loss", name)
    torch.testing.assert_close(loss.forward(prediction, target), expected, **TIGHT)
    assert torch.equal(loss.backward(), expected_grad)


def test_huber_delta_is_an_option(registry, gen):
    prediction = torch.randn(20, 1, generator=gen, dtype=torch.float64) * 3
    target = torch.zeros(20, 1, dtype=torch.float64)
    expected, expected_grad = autograd_of(lambda p: F.huber_loss(p, target, delta=0.3), prediction)
    loss = registry.create("loss", "huber", delta=0.3)
    torch.testing.assert_close(loss.forward(prediction, target), expected, **TIGHT)
    torch.testing.assert_close(loss.backward(), expected_grad, **TIGHT)


@pytest.mark.parametrize("name", ["cross_entropy", "mae", "huber"])
def test_new_losses_pass_the_kit(name, registry):
    check_loss(name, registry=registry)


@pytest.mark.parametrize("name", ["cross_entropy", "mae", "huber"])
def test_backward_before_forward_is_a_state_error(registry, name):
    with pytest.raises(StateError, match="before forward"):
        registry.create("loss", name).backward()


@pytest.mark.parametrize("name", ["cross_entropy", "mae", "huber"])
def test_a_leading_run_dimension_gives_each_run_its_own_loss(registry, gen, name):
    prediction = torch.randn(3, 8, 4, generator=gen, dtype=torch.float64)
    target = F.one_hot(torch.randint(4, (3, 8), generator=gen), 4).double()
    loss = registry.create("loss", name)
    values, grads = loss.forward(prediction, target), loss.backward()
    for r in range(3):
        single = registry.create("loss", name)
        torch.testing.assert_close(values[r], single.forward(prediction[r], target[r]), **TIGHT)
        torch.testing.assert_close(grads[r], single.backward(), **TIGHT)


def test_ten_classes_twenty_adam_steps_give_torch_weights(registry):
    gen = torch.Generator().manual_seed(7)
    ours = build_mlp(registry, 64, [32], 10, activation="relu", init="he", generator=gen,
                     dtype=torch.float64)
    layers = []
    for module in ours.modules:
        if hasattr(module, "weight"):
            linear = torch.nn.Linear(module.in_features, module.out_features, dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(module.weight.value.T)
                linear.bias.copy_(module.bias.value)
            layers.append(linear)
        else:
            layers.append(torch.nn.ReLU())
    theirs = torch.nn.Sequential(*layers)
    x = torch.randn(20 * 16, 64, generator=gen, dtype=torch.float64)
    labels = torch.randint(10, (20 * 16,), generator=gen)
    one_hot = F.one_hot(labels, 10).double()
    loss = registry.create("loss", "cross_entropy")
    optimizer = registry.create("optimizer", "adam", parameters=ours.parameters(), lr=1e-2)
    their_optimizer = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    for step in range(20):
        rows = slice(step * 16, (step + 1) * 16)
        with torch.no_grad():
            optimizer.zero_grad()
            loss.forward(ours.forward(x[rows]), one_hot[rows])
            ours.backward(loss.backward())
            optimizer.step()
        their_optimizer.zero_grad()
        F.cross_entropy(theirs(x[rows]), labels[rows]).backward()
        their_optimizer.step()
    theirs_weights = [t for layer in theirs if isinstance(layer, torch.nn.Linear)
                      for t in (layer.weight.detach().T, layer.bias.detach())]
    start = build_mlp(registry, 64, [32], 10, activation="relu", init="he",
                      generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert not torch.allclose(ours.parameters()[0].value, start.parameters()[0].value)
    for a, b in zip([p.value for p in ours.parameters()], theirs_weights, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
