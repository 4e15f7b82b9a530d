"""Many runs at once: the batched ensemble gives each seed the run `train` gives it."""

import dataclasses

import pytest
import torch

from core import Registry, TrainSettings, hookimpl, train
from core.pipeline.ensemble import supports_runs, train_ensemble
from core.plugin.registry import read_manifest, builtin_manifest

SMALL = TrainSettings(hidden=(8, 8), epochs=3, n_train=200, n_test=150, batch_size=30,
                      dtype="float64")
SEEDS = [0, 1, 7]


def assert_runs_match(together, alone, rtol):
    assert len(together) == len(alone)
    for a, b in zip(together, alone, strict=True):
        assert a.settings == b.settings
        for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
            torch.testing.assert_close(p.value, q.value, rtol=rtol, atol=rtol)
        torch.testing.assert_close(torch.tensor(a.losses), torch.tensor(b.losses), rtol=rtol, atol=0)
        assert (a.train_error, a.test_error) == (b.train_error, b.test_error)


@pytest.mark.parametrize(("act", "loss", "optimizer", "lr"), [
    ("tanh", "mse", "sgd", 0.1), ("relu", "bce", "sgd", 0.1), ("sigmoid", "mse", "adam", 0.01),
])
def test_batched_runs_give_each_seed_its_own_run(registry, act, loss, optimizer, lr):
    settings = dataclasses.replace(SMALL, act=act, loss=loss, optimizer=optimizer, lr=lr)
    assert supports_runs(registry, settings)
    together = train_ensemble(settings, SEEDS, registry)
    alone = [train(dataclasses.replace(settings, seed=s), registry) for s in SEEDS]
    # NOTE: a batched matmul (bmm) may sum in another order than the single run's mm, so
    # the weights agree to rounding, not bit for bit.
    assert_runs_match(together, alone, rtol=1e-11)
    # and the runs really differ from one another, so matching each means something
    assert together[0].losses != together[1].losses


def test_runs_train_with_their_own_batches_when_the_batch_does_not_divide_n(registry):
    settings = dataclasses.replace(SMALL, batch_size=7, n_train=50, epochs=2)
    together = train_ensemble(settings, [3, 4], registry)
    alone = [train(dataclasses.replace(settings, seed=s), registry) for s in [3, 4]]
    assert_runs_match(together, alone, rtol=1e-11)


class Softsign:
    """x / (1 + |x|), declared without run support."""

    def forward(self, x):
        self.x = x
        return x / (1 + x.abs())

    def backward(self, grad_output):
        return grad_output / (1 + self.x.abs()) ** 2

    def parameters(self):
        return []


@hookimpl
def register_activations(register):
    register("softsign", Softsign)


def test_a_component_without_run_support_trains_the_runs_one_at_a_time():
    registry = Registry()
    for module in read_manifest(builtin_manifest()):
        registry.add_module(module)
    registry.add_plugin(__import__(__name__, fromlist=["_"]), name="softsign")
    settings = dataclasses.replace(SMALL, act="softsign")
    assert not supports_runs(registry, settings)
    together = train_ensemble(settings, [2, 5], registry)
    alone = [train(dataclasses.replace(settings, seed=s), registry) for s in [2, 5]]
    for a, b in zip(together, alone, strict=True):  # the same computation: bit for bit
        assert a.losses == b.losses
        for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
            assert torch.equal(p.value, q.value)


def test_no_seeds_no_runs(registry):
    assert train_ensemble(SMALL, [], registry) == []


def test_on_epoch_gets_the_mean_loss_over_runs(registry):
    seen = []
    results = train_ensemble(SMALL, SEEDS, registry, on_epoch=lambda e, loss: seen.append((e, loss)))
    assert [e for e, _ in seen] == [1, 2, 3]
    for epoch, loss in seen:
        expected = sum(r.losses[epoch - 1] for r in results) / len(results)
        assert loss == pytest.approx(expected, rel=1e-12)


def test_fit_losses_are_the_running_total_of_batch_losses(registry):
    """The loss history, summed once per epoch, equals a running total kept per step."""
    from core import build_mlp, fit

    gen = torch.Generator().manual_seed(3)
    x = torch.rand(33, 2, generator=gen)
    y = (x.sum(1, keepdim=True) > 1).float()
    models = [build_mlp(registry, 2, [5], 1, activation="tanh", init="he",
                        generator=torch.Generator().manual_seed(9)) for _ in range(2)]
    loss = registry.create("loss", "mse")
    opt = registry.create("optimizer", "sgd", parameters=models[0].parameters(), lr=0.1)
    history = fit(models[0], loss, opt, x, y, epochs=2, batch_size=8,
                  generator=torch.Generator().manual_seed(5))
    manual_gen, expected = torch.Generator().manual_seed(5), []
    opt = registry.create("optimizer", "sgd", parameters=models[1].parameters(), lr=0.1)
    for _ in range(2):
        order, total = torch.randperm(33, generator=manual_gen), torch.zeros((), dtype=torch.float64)
        for start in range(0, 33, 8):
            batch = order[start : start + 8]
            value = loss.forward(models[1].forward(x[batch]), y[batch])
            opt.zero_grad()
            models[1].backward(loss.backward())
            opt.step()
            total += value * len(batch)
        expected.append(total.item() / 33)
    assert history == expected  # bit for bit


def test_a_stack_given_by_layers_trains_as_an_ensemble_too(registry):
    settings = dataclasses.replace(SMALL, hidden=TrainSettings().hidden,  # layers is the network
                                   layers="linear:out=6,tanh,linear:out=4,relu,linear:out=1")
    assert supports_runs(registry, settings)
    together = train_ensemble(settings, [0, 3], registry)
    alone = [train(dataclasses.replace(settings, seed=s), registry) for s in [0, 3]]
    assert [spec.name for spec in together[0].specs] == ["linear", "tanh", "linear", "relu", "linear"]
    assert_runs_match(together, alone, rtol=1e-11)


def test_a_diverging_run_stops_the_ensemble_as_it_stops_train(registry):
    from core import DivergenceError

    settings = dataclasses.replace(SMALL, optimizer="sgd", lr=1e6, dtype="float32")
    with pytest.raises(DivergenceError) as alone:
        train(settings, registry)
    with pytest.raises(DivergenceError) as together:
        train_ensemble(settings, [settings.seed, 1], registry)
    assert "diverged at epoch 1" in str(alone.value) and "diverged at epoch 1" in str(together.value)
    assert "--lr 100000" in str(together.value)


def test_one_exploding_run_stops_the_ensemble_naming_its_seed():
    """The 1e4x rule is applied per run, so one run is not diluted by the others' losses."""
    from core import DivergenceError
    from core.pipeline.ensemble import check_runs

    runs = [dataclasses.replace(SMALL, seed=s) for s in (4, 9)]
    weights = [torch.ones(2, 3, 3)]  # (runs, ...) all finite
    check_runs(runs, [types_parameter(weights[0])], 1, [0.5, 0.6], [0.7, 0.7])  # fine
    with pytest.raises(DivergenceError, match=r"epoch 2 \(seed 9\): the mean loss 1e\+05"):
        check_runs(runs, [types_parameter(weights[0])], 2, [0.5, 1e5], [0.7, 0.7])
    nan_weight = torch.ones(2, 3, 3)
    nan_weight[0, 1, 1] = float("nan")
    with pytest.raises(DivergenceError, match=r"\(seed 4\): a weight is not finite"):
        check_runs(runs, [types_parameter(nan_weight)], 3, [0.5, 0.6], [0.7, 0.7])


def types_parameter(value):
    from core import Parameter

    return Parameter.of(value)
