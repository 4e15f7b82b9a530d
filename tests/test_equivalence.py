"""Our Sequential + optimizer against torch.nn + torch.optim: same start, same batches,
same weights at the end (float64, 1e-10 relative)."""

import pytest
import torch

from core import build_mlp, fit

SHAPE = (2, [25, 25, 25], 1)  # the report's network
TORCH_ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid}
TORCH_LOSSES = {"mse": torch.nn.MSELoss, "bce": torch.nn.BCEWithLogitsLoss}


def torch_twin(ours, act):
    """A torch.nn.Sequential with our network's exact weights."""
    layers = []
    for module in ours.modules:
        if hasattr(module, "weight"):
            linear = torch.nn.Linear(module.in_features, module.out_features, dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(module.weight.value.T)
                linear.bias.copy_(module.bias.value)
            layers.append(linear)
        else:
            layers.append(TORCH_ACTIVATIONS[act]())
    return torch.nn.Sequential(*layers)


def our_weights(model):
    return [p.value for p in model.parameters()]


def torch_weights(model):
    weights = []
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            weights += [layer.weight.detach().T, layer.bias.detach()]
    return weights


def train_both(registry, act, loss_name, optimizer, options, steps, batch=10):
    gen = torch.Generator().manual_seed(42)
    ours = build_mlp(
        registry, SHAPE[0], SHAPE[1], SHAPE[2], activation=act, init="xavier",
        generator=gen, dtype=torch.float64,
    )
    theirs = torch_twin(ours, act)
    x = torch.rand(steps * batch, 2, generator=gen, dtype=torch.float64)
    y = (((x - 0.5) ** 2).sum(1, keepdim=True) < 0.16).double()

    our_loss = registry.create("loss", loss_name)
    our_opt = registry.create("optimizer", optimizer, parameters=ours.parameters(), **options)
    their_loss = TORCH_LOSSES[loss_name]()
    torch_options = dict(options)
    if optimizer in ("adam", "adamw"):
        torch_options["betas"] = (torch_options.pop("beta1", 0.9), torch_options.pop("beta2", 0.999))
    their_opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer](
        theirs.parameters(), **torch_options
    )
    with torch.no_grad():
        for step in range(steps):
            xb, yb = x[step * batch : (step + 1) * batch], y[step * batch : (step + 1) * batch]
            our_opt.zero_grad()
            our_loss.forward(ours.forward(xb), yb)
            ours.backward(our_loss.backward())
            our_opt.step()
    for step in range(steps):
        xb, yb = x[step * batch : (step + 1) * batch], y[step * batch : (step + 1) * batch]
        their_opt.zero_grad()
        their_loss(theirs(xb), yb).backward()
        their_opt.step()
    return ours, theirs


def assert_same_weights(ours, theirs):
    for a, b in zip(our_weights(ours), torch_weights(theirs), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_twenty_sgd_steps_give_torch_weights(registry, act, loss):
    ours, theirs = train_both(registry, act, loss, "sgd", {"lr": 0.1}, steps=20)
    assert_same_weights(ours, theirs)
    # and the run really moved the weights, so the comparison means something
    start, _ = train_both(registry, act, loss, "sgd", {"lr": 0.1}, steps=1)
    assert not torch.allclose(our_weights(ours)[0], our_weights(start)[0], rtol=1e-6)


@pytest.mark.parametrize(
    ("optimizer", "options"),
    [
        ("sgd", {"lr": 0.05, "momentum": 0.9}),
        ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
        ("sgd", {"lr": 0.05, "momentum": 0.5, "weight_decay": 1e-3}),
        ("adam", {"lr": 1e-2}),
        ("adamw", {"lr": 1e-2}),
        ("adamw", {"lr": 1e-2, "weight_decay": 0.1, "beta2": 0.95}),
        ("adam", {"lr": 3e-3, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 1e-2}),
        ("adamw", {"lr": 3e-3, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.5}),
    ],
)
def test_fifty_optimizer_steps_give_torch_weights(registry, optimizer, options):
    ours, theirs = train_both(registry, "tanh", "mse", optimizer, options, steps=50)
    assert_same_weights(ours, theirs)


def test_adamw_decay_is_decoupled_from_adam_with_l2(registry):
    """AdamW's decay is not Adam's weight_decay (which goes through the moments): with the
    same coefficient, the weights part ways, and adamw at 0 is adam exactly."""
    decoupled, _ = train_both(registry, "tanh", "mse", "adamw", {"lr": 1e-2, "weight_decay": 0.5}, steps=20)
    coupled, _ = train_both(registry, "tanh", "mse", "adam", {"lr": 1e-2, "weight_decay": 0.5}, steps=20)
    assert not torch.allclose(our_weights(decoupled)[0], our_weights(coupled)[0], rtol=1e-3)
    none, _ = train_both(registry, "tanh", "mse", "adamw", {"lr": 1e-2, "weight_decay": 0.0}, steps=20)
    adam, _ = train_both(registry, "tanh", "mse", "adam", {"lr": 1e-2}, steps=20)
    for a, b in zip(our_weights(none), our_weights(adam), strict=True):
        assert torch.equal(a, b)


def test_fit_draws_batches_from_the_generator_like_a_manual_loop(registry):
    """fit() is the same loop as above: seeded permutation, batches in order."""
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(30, 2, generator=gen, dtype=torch.float64)
    y = (x.sum(1, keepdim=True) > 1).double()
    models = [
        build_mlp(registry, 2, [5], 1, activation="tanh", init="he",
                  generator=torch.Generator().manual_seed(9), dtype=torch.float64)
        for _ in range(2)
    ]
    loss = registry.create("loss", "mse")
    fit(models[0], loss, registry.create("optimizer", "sgd", parameters=models[0].parameters(), lr=0.1),
        x, y, epochs=2, batch_size=7, generator=torch.Generator().manual_seed(5))
    manual_gen = torch.Generator().manual_seed(5)
    opt = registry.create("optimizer", "sgd", parameters=models[1].parameters(), lr=0.1)
    for _ in range(2):
        order = torch.randperm(30, generator=manual_gen)
        for start in range(0, 30, 7):
            batch = order[start : start + 7]
            opt.zero_grad()
            loss.forward(models[1].forward(x[batch]), y[batch])
            models[1].backward(loss.backward())
            opt.step()
    for a, b in zip(our_weights(models[0]), our_weights(models[1])):
        assert torch.equal(a, b)
