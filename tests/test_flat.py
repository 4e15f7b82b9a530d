"""core.training.flat: parameters moved into one buffer keep their identity, shape and values."""

from __future__ import annotations

import pytest
import torch

from core import Parameter
from core.training.flat import pack, unpack
from plugins.optimizers import SGD, Adam


def tensors():
    g = torch.Generator().manual_seed(0)
    # the last one is a transpose: not contiguous, yet it owns its storage and can move
    return [torch.randn(2, 3, generator=g), torch.randn(3, generator=g), torch.randn(3, 4, generator=g).mT]


def test_pack_moves_each_tensor_into_one_buffer_in_place():
    ts = tensors()
    objects, before = [id(t) for t in ts], [t.clone() for t in ts]
    flat = pack(ts)
    assert flat.shape == (6 + 3 + 12,)
    assert [id(t) for t in ts] == objects  # the same tensor objects, which modules hold
    for t, b in zip(ts, before):
        assert t.shape == b.shape and torch.equal(t, b)
    flat.add_(1.0)  # one op on the buffer is seen through every tensor
    for t, b in zip(ts, before):
        assert torch.equal(t, b + 1.0)
    assert [torch.equal(u, t) for u, t in zip(unpack(flat, ts), ts)] == [True] * 3


def test_packed_tensors_are_reused_not_moved_again():
    ts = tensors()
    flat = pack(ts)
    again = pack(ts)
    assert again.data_ptr() == flat.data_ptr() and again.shape == flat.shape


@pytest.mark.parametrize("case", ["mixed dtypes", "repeated", "empty", "expanded", "a slice"])
def test_pack_refuses_what_cannot_share_a_buffer_and_touches_nothing(case):
    ts = {"mixed dtypes": [torch.zeros(2), torch.zeros(2, dtype=torch.float64)],
          "repeated": [torch.zeros(2)] * 2, "empty": [],
          "expanded": [torch.zeros(2), torch.zeros(3).expand(2, 3)],  # 6 elements, 3 stored
          "a slice": [torch.zeros(2), torch.zeros(4, 4)[1:]]}[case]  # moving it cuts the link
    pointers = [t.data_ptr() for t in ts]
    assert pack(ts) is None
    assert [t.data_ptr() for t in ts] == pointers


@pytest.mark.parametrize("second", ["the same list", "reversed", "a subset"])
def test_a_second_optimizer_never_cuts_the_first_one_off(second):
    """The same parameters in the same order share the packed buffer; in another order or
    a subset they stay where the first optimizer put them (the second goes tensor by
    tensor), and both keep moving the weights the layers hold."""
    params = [Parameter.of(torch.ones(2, 2)), Parameter.of(torch.ones(3))]
    first = SGD(params, lr=1.0)
    others = {"the same list": params, "reversed": params[::-1], "a subset": params[1:]}[second]
    again = SGD(others, lr=1.0)
    assert again.packed == (second == "the same list")
    for p in params:
        p.grad.fill_(0.5)
    first.step()
    assert all(torch.equal(p.value, torch.full_like(p.value, 0.5)) for p in params)
    again.step()
    for p in params:
        expected = 0.0 if any(p is q for q in others) else 0.5
        assert torch.equal(p.value, torch.full_like(p.value, expected))


@pytest.mark.parametrize("optimizer, options", [
    (SGD, {}), (SGD, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (Adam, {"weight_decay": 0.01}),
])
def test_an_optimizer_over_packed_or_separate_parameters_gives_the_same_weights(optimizer, options):
    """Packed (one dtype) and unpacked (mixed dtypes: one float32 tensor alongside) take
    the same steps element by element, so the float64 weights end bit for bit equal."""
    def make(extra):
        g = torch.Generator().manual_seed(1)
        params = [Parameter.of(torch.randn(4, 3, generator=g, dtype=torch.float64)),
                  Parameter.of(torch.randn(3, generator=g, dtype=torch.float64))]
        return params + ([Parameter.of(torch.zeros(2))] if extra else [])

    packed, separate = make(extra=False), make(extra=True)
    opt_packed, opt_separate = optimizer(packed, lr=0.1, **options), optimizer(separate, lr=0.1, **options)
    assert opt_packed.packed and not opt_separate.packed
    g = torch.Generator().manual_seed(2)
    for _ in range(5):
        for opt, params in ((opt_packed, packed), (opt_separate, separate)):
            opt.zero_grad()
        grads = [torch.randn(p.value.shape, generator=g, dtype=torch.float64) for p in packed]
        for params in (packed, separate):
            for p, grad in zip(params, grads):
                p.grad += grad
        opt_packed.step()
        opt_separate.step()
    for a, b in zip(packed, separate):
        assert torch.equal(a.value, b.value)
    state_packed, state_separate = opt_packed.state_dict(), opt_separate.state_dict()
    for key, value in state_packed.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, state_separate[key]), key


def test_the_built_in_network_and_ensemble_are_packed():
    """The speed of the optimizer step rests on this (bench/README.md)."""
    from core import TrainSettings, default_registry
    from core.network.assemble import build_stack
    from core.pipeline.prepare import prepare
    from core.pipeline.resolve import resolve

    registry, settings = default_registry(), TrainSettings()
    run = prepare(resolve(settings, registry), registry)
    single = run.model.parameters()
    ensemble = build_stack(registry, run.specs, 2, init="xavier",
                           generator=torch.Generator().manual_seed(0), runs=3).parameters()
    for params in (single, ensemble):
        assert Adam(params, lr=0.01).packed and SGD(params, lr=0.1).packed
