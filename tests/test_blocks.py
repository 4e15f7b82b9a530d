"""Residual blocks, repeats and composite layers: the stack syntax, the Python API, and the
hand-written backward of whole networks (a small ResNet, a GPT) against autograd."""

from __future__ import annotations

import pytest
import torch

from core import LayerSpec, Residual, SettingsError, ShapeError, build_stack, parse_layers, repeat, residual
from core.network.stack import parse_layer_text
from core.plugin.registry import default_registry
from nn_testing import check_module

REGISTRY = default_registry()
RESNET = "conv2d:out=4,k=3,pad=1,relu,2*residual(conv2d:out=4,k=3,pad=1,relu),maxpool2d:k=2,flatten,linear:out=3"
GPT = ("embedding:vocab=7,width=6,position,"
       "2*(residual(layernorm,attention:heads=2),residual(layernorm,linear:out=10,gelu,linear:out=6)),"
       "layernorm,linear:out=7")


def network(text):
    """A factory for the kit: the network `text` names, built for the kit's sample shape."""
    def build(in_shape, generator, dtype):
        return build_stack(REGISTRY, parse_layers(text, REGISTRY), in_shape, init="xavier",
                           generator=generator, dtype=dtype)
    return build


def test_residual_and_repeat_read_as_nested_pairs():
    assert parse_layer_text("2*residual(linear:out=3,tanh),relu") == [
        ("residual", {"layers": [("linear", {"out": 3}), ("tanh", {})]}),
        ("residual", {"layers": [("linear", {"out": 3}), ("tanh", {})]}),
        ("relu", {}),
    ]
    assert parse_layer_text("2*(tanh,relu)") == [("tanh", {}), ("relu", {}), ("tanh", {}), ("relu", {})]
    # arguments after a component still belong to it inside a block
    assert parse_layer_text("residual(conv2d:out=4,k=3,pad=1)") == [
        ("residual", {"layers": [("conv2d", {"out": 4, "k": 3, "pad": 1})]})]


@pytest.mark.parametrize("text,message", [
    ("residual(tanh", "is never closed"),
    ("tanh),relu", "closes nothing"),
    ("0*tanh", "repeat at least once"),
    ("block(tanh)", "group layers; e.g."),
])
def test_bad_block_text_says_what_to_write(text, message):
    with pytest.raises(SettingsError, match=message):
        parse_layer_text(text)


def test_python_api_builds_what_the_text_builds():
    linear, tanh = LayerSpec("layer", "linear", {"out_features": 4}), LayerSpec("activation", "tanh")
    specs = repeat(2, residual(linear, tanh))
    assert specs == parse_layers("2*residual(linear:out=4,tanh)", REGISTRY)
    model = build_stack(REGISTRY, specs, 4, init="he", generator=torch.Generator().manual_seed(0))
    assert [type(m) for m in model.modules] == [Residual, Residual]
    assert model[0].modules[0].weight is not model[1].modules[0].weight  # each copy its own weights


def test_specs_go_to_dict_and_back():
    specs = parse_layers(GPT, REGISTRY)
    assert [LayerSpec.from_dict(s.to_dict()) for s in specs] == specs


def test_residual_adds_the_identity_and_its_gradient():
    model = build_stack(REGISTRY, parse_layers("residual(linear:out=3)", REGISTRY), 3, init="he",
                        generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    inner = model[0].modules[0]
    x = torch.randn(2, 3, dtype=torch.float64)
    torch.testing.assert_close(model.forward(x), x + x @ inner.weight.value + inner.bias.value)
    g = torch.randn(2, 3, dtype=torch.float64)
    torch.testing.assert_close(model.backward(g), g + g @ inner.weight.value.T)


def test_a_residual_block_that_changes_the_shape_is_refused():
    with pytest.raises(ShapeError, match="residual block must keep its input's shape"):
        build_stack(REGISTRY, parse_layers("residual(linear:out=5)", REGISTRY), 3, init="he",
                    generator=None)


def test_resnet_block_on_images_passes_the_kit():
    check_module(network(RESNET), in_shape=(1, 8, 8), batch_sizes=(1, 2))


def test_gpt_passes_the_kit_end_to_end():
    check_module(network(GPT), in_shape=(5,), batch_sizes=(1, 2))


def test_gpt_of_one_position_and_one_head_passes_the_kit():
    text = "embedding:vocab=3,width=5,position,residual(layernorm,attention:heads=1),linear:out=3"
    check_module(network(text), in_shape=(1,), batch_sizes=(1, 2))


def test_transformer_block_is_the_two_residuals_written_out():
    preset = "embedding:vocab=7,width=6,position,2*transformer_block:heads=2:hidden=10,layernorm,linear:out=7"
    a = network(preset)((5,), torch.Generator().manual_seed(3), torch.float64)
    b = network(GPT)((5,), torch.Generator().manual_seed(3), torch.float64)
    ids = torch.randint(0, 7, (2, 5)).double()
    assert torch.equal(a.forward(ids), b.forward(ids))


def test_gpt_preset_takes_the_vocabulary():
    model = network("gpt:vocab=9,width=8,blocks=1,heads=2")((4,), torch.Generator().manual_seed(0), torch.float64)
    assert model.forward(torch.zeros(3, 4, dtype=torch.float64)).shape == (3, 4, 9)
    with pytest.raises(SettingsError, match="gpt needs vocab"):
        network("gpt")((4,), None, torch.float64)


def test_summary_lists_a_blocks_own_layers():
    from core.network.summary import format_table, layer_table

    specs = parse_layers("linear:out=4,residual(linear:out=4,tanh)", REGISTRY)
    model = build_stack(REGISTRY, specs, 3, init="he", generator=None)
    rows = layer_table(model, specs, 3, torch.float32)
    assert [r["index"] for r in rows] == [0, 1, "1.0", "1.1"]
    assert rows[1]["layer"] == "residual" and rows[1]["parameters"] == 20
    assert format_table(rows, 3).endswith("total: 36 trainable parameters")


def test_cached_sampling_draws_what_recomputing_draws_within_the_context():
    from core.network.sampling import Sampling, sample

    model = network(GPT)((12,), torch.Generator().manual_seed(4), torch.float64)
    prompt, how = [1, 2, 3], Sampling(temperature=0.8, top_k=5)
    cached = sample(model, prompt, 9, context=12, sampling=how, generator=torch.Generator().manual_seed(7))
    plain = sample(model, prompt, 9, context=12, sampling=how, generator=torch.Generator().manual_seed(7),
                   cache=False)
    assert cached == plain and len(cached) == 9
    # past the context the cache starts again from the last half: still valid tokens
    longer = sample(model, prompt, 30, context=12, sampling=how, generator=torch.Generator().manual_seed(7))
    assert longer[:9] == cached and all(0 <= t < 7 for t in longer)


def test_greedy_sampling_takes_the_likeliest_token():
    from core.network.sampling import Sampling, sample

    model = network(GPT)((6,), torch.Generator().manual_seed(4), torch.float64)
    (token,) = sample(model, [3], 1, context=6, sampling=Sampling(temperature=0), generator=None)
    assert token == int(model.forward(torch.tensor([[3.0]], dtype=torch.float64))[0, -1].argmax())
