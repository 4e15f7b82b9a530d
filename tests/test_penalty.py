"""The L1/L2 penalty: its value and hand-written gradient against autograd (float64), the
weights it reaches, a penalised run against torch step for step, and the option."""

import json

import pytest
import torch
from typer.testing import CliRunner

from cli import app
from core import build_mlp, fit
from core.errors import SettingsError
from core.training.penalty import Penalty, penalised
from core.training.settings import TrainSettings

CASES = [Penalty(l2=0.3), Penalty(l1=0.05), Penalty(l1=0.02, l2=0.7)]


@pytest.mark.parametrize("penalty", CASES, ids=repr)
@pytest.mark.parametrize("lead", [0, 1])
def test_value_and_gradient_match_autograd(penalty, lead, gen):
    shapes = [(3, 5), (5, 4, 2, 2)] if lead == 0 else [(2, 3, 5), (2, 5, 4)]
    weights = [torch.randn(*s, generator=gen, dtype=torch.float64) for s in shapes]
    weights[0].view(-1)[:3] = 0.0  # |w| at exactly 0: autograd's subgradient is 0
    leaves = [w.clone().requires_grad_(True) for w in weights]
    theirs = sum(penalty.l1 * w.flatten(lead).abs().sum(-1) + penalty.l2 * w.flatten(lead).pow(2).sum(-1)
                 for w in leaves)  # () or (runs,)
    # forward: the value, per run
    torch.testing.assert_close(penalty.value(weights, lead), theirs.detach(), rtol=1e-14, atol=0)
    # backward: the gradient added into each parameter's own (here starting from a random one)
    theirs.sum().backward()
    from core.network.protocols import Parameter

    start = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    params = [Parameter(w, g.clone(), "weight") for w, g in zip(weights, start)]
    penalty.add_grad(params)
    for p, g0, leaf in zip(params, start, leaves):
        torch.testing.assert_close(p.grad - g0, leaf.grad, rtol=1e-13, atol=1e-15)


def test_penalised_are_the_weight_matrices_not_biases_nor_a_scale(registry):
    model = build_mlp(registry, 2, [4], 1, activation="tanh", init="xavier",
                      generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert [tuple(p.value.shape) for p in penalised(model)] == [(2, 4), (4, 1)]
    assert penalised(registry.create("layer", "batchnorm", in_channels=4)) == []
    # with a run dimension in front, the biases (runs, out) are still not matrices
    runs = registry.create("layer", "linear", in_features=3, out_features=2,
                           init=registry.create("initializer", "xavier"),
                           generator=torch.Generator().manual_seed(0), runs=5)
    assert [tuple(p.value.shape) for p in penalised(runs, lead=1)] == [(5, 3, 2)]


@pytest.mark.parametrize("penalty", CASES, ids=repr)
def test_penalised_sgd_run_matches_torch_with_the_penalty_in_the_loss(registry, penalty):
    """fit with the penalty == torch minimising loss + penalty with autograd, 30 steps."""
    gen = torch.Generator().manual_seed(7)
    ours = build_mlp(registry, 2, [6, 5], 1, activation="tanh", init="xavier",
                     generator=gen, dtype=torch.float64)
    linears = [m for m in ours.modules if hasattr(m, "weight")]
    theirs = []
    for m in linears:
        w = m.weight.value.clone().requires_grad_(True)
        b = m.bias.value.clone().requires_grad_(True)
        theirs.append((w, b))
    x = torch.randn(60, 2, generator=gen, dtype=torch.float64)
    y = (x[:, :1] * x[:, 1:] > 0).double()
    loss = registry.create("loss", "bce")
    optimizer = registry.create("optimizer", "sgd", parameters=ours.parameters(), lr=0.2,
                                momentum=0.9)
    order_gen = torch.Generator().manual_seed(3)
    fit(ours, loss, optimizer, x, y, epochs=3, batch_size=6, generator=order_gen, penalty=penalty)

    params = [t for pair in theirs for t in pair]
    their_opt = torch.optim.SGD(params, lr=0.2, momentum=0.9)
    order_gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        order = torch.randperm(60, generator=order_gen)
        for start in range(0, 60, 6):
            rows = order[start:start + 6]
            h = x[rows]
            for i, (w, b) in enumerate(theirs):
                h = h @ w + b
                if i < len(theirs) - 1:
                    h = torch.tanh(h)
            value = torch.nn.functional.binary_cross_entropy_with_logits(h, y[rows])
            value = value + sum(penalty.l1 * w.abs().sum() + penalty.l2 * w.pow(2).sum()
                                for w, _ in theirs)
            their_opt.zero_grad()
            value.backward()
            their_opt.step()
    for m, (w, b) in zip(linears, theirs):
        torch.testing.assert_close(m.weight.value, w.detach(), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(m.bias.value, b.detach(), rtol=1e-10, atol=1e-12)


def test_a_penalty_shrinks_the_weights(registry):
    def trained(settings):
        from core import train

        return train(settings, registry).model

    base = TrainSettings(epochs=20, n_train=200, n_test=50)
    plain = trained(base)
    shrunk = trained(TrainSettings(epochs=20, n_train=200, n_test=50, l2=0.01))
    norm = lambda m: sum(float(p.value.pow(2).sum()) for p in penalised(m))  # noqa: E731
    assert norm(shrunk) < 0.5 * norm(plain)


@pytest.mark.parametrize("field", ["l1", "l2"])
@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), True])
def test_settings_refuse_a_bad_penalty(field, value):
    with pytest.raises(SettingsError, match=f"{field} must be a finite number >= 0"):
        TrainSettings(**{field: value})


def test_to_dict_leaves_a_zero_penalty_out():
    assert "l2" not in TrainSettings().to_dict() and "l1" not in TrainSettings().to_dict()
    assert TrainSettings(l2=1e-3).to_dict()["l2"] == 1e-3


def test_cli_trains_with_a_penalty_and_refuses_a_negative_one():
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--epochs", "2", "--l2", "0.001", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["l2"] == 0.001
    result = runner.invoke(app, ["train", "--epochs", "2", "--l1", "-1"])
    assert result.exit_code == 2
    assert "l1 must be a finite number >= 0, got -1" in result.stderr


def test_ensemble_runs_take_the_penalty_too(registry):
    """--runs trained together penalise each run as its single run does."""
    from core.pipeline.ensemble import train_ensemble

    settings = TrainSettings(epochs=5, n_train=100, n_test=20, l1=0.001, l2=0.01, dtype="float64")
    together = train_ensemble(settings, [0, 1], registry)
    from core import train

    alone = train(settings, registry)
    for a, b in zip(penalised(together[0].model), penalised(alone.model)):
        torch.testing.assert_close(a.value, b.value, rtol=1e-9, atol=1e-11)
