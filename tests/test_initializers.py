import math

import pytest
import torch

FORMULAS = {
    "default": lambda fan_in, fan_out: 1.0,
    "he": lambda fan_in, fan_out: math.sqrt(2.0 / fan_in),
    "xavier": lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)),
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
@pytest.mark.parametrize(("fan_in", "fan_out"), [(1000, 1000), (250, 4000)])
def test_empirical_std_within_5_percent_of_formula(registry, gen, name, fan_in, fan_out):
    weight = torch.empty(fan_in, fan_out, dtype=torch.float64)
    registry.create("initializer", name)(weight, fan_in, fan_out, gen)
    expected = FORMULAS[name](fan_in, fan_out)
    assert weight.std().item() == pytest.approx(expected, rel=0.05)
    assert abs(weight.mean().item()) < 0.01 * expected  # mean zero, at this size
    assert torch.isfinite(weight).all()


def test_initializers_differ_where_their_formulas_do(registry, gen):
    stds = {}
    for name in FORMULAS:
        weight = torch.empty(400, 100, dtype=torch.float64)
        registry.create("initializer", name)(weight, 400, 100, torch.Generator().manual_seed(0))
        stds[name] = weight.std().item()
    assert stds["default"] > stds["he"] > stds["xavier"]


def test_same_generator_seed_gives_same_weights(registry):
    a, b = torch.empty(30, 20), torch.empty(30, 20)
    init = registry.create("initializer", "he")
    init(a, 30, 20, torch.Generator().manual_seed(7))
    init(b, 30, 20, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
