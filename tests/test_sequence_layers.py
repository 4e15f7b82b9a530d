"""Sequence layers (embedding, position, attention, and linear/layernorm/gelu/dropout on
(batch, time, features)): backward against autograd through the kit at odd sizes, and
forward against torch's own functions in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nn_testing import check_module
from plugins.attention import CausalSelfAttention
from plugins.embedding import Embedding, PositionEmbedding

# (time, width): time 1, width not a multiple of 8, and a longer one
SEQUENCES = [(1, 5), (7, 6), (4, 13)]


def gaussian(weight, fan_in, fan_out, generator):
    weight.copy_(torch.randn(weight.shape, generator=generator, dtype=weight.dtype) / fan_in**0.5)


@pytest.mark.parametrize("time,width", SEQUENCES)
def test_embedding_passes_the_kit(time, width):
    check_module("embedding", in_shape=(time,), vocab=11, width=width, batch_sizes=(1, 3))


@pytest.mark.parametrize("time,width", SEQUENCES)
def test_position_passes_the_kit(time, width):
    check_module("position", in_shape=(time, width), batch_sizes=(1, 3))


@pytest.mark.parametrize("time,width,heads", [(1, 5, 1), (7, 6, 1), (7, 6, 3), (4, 12, 4)])
def test_attention_passes_the_kit(time, width, heads):
    check_module("attention", in_shape=(time, width), heads=heads, batch_sizes=(1, 2))


def test_attention_with_dropout_passes_the_kit():
    check_module("attention", in_shape=(5, 6), heads=2, dropout=0.3, batch_sizes=(1, 2))


@pytest.mark.parametrize("name,args", [
    ("linear", {"out_features": 3}), ("layernorm", {}), ("gelu", {}),
    ("gelu", {"approximate": "tanh"}), ("dropout", {"p": 0.25}),
])
@pytest.mark.parametrize("time,width", SEQUENCES)
def test_token_wise_layers_pass_the_kit_on_sequences(name, args, time, width):
    check_module(name, in_shape=(time, width), batch_sizes=(1, 3), **args)


def test_embedding_forward_is_torchs():
    g = torch.Generator().manual_seed(0)
    layer = Embedding(5, gaussian, 10, g, dtype=torch.float64)
    ids = torch.tensor([[1, 9, 1], [0, 0, 4]])
    expected = F.embedding(ids, layer.weight.value)
    assert torch.equal(layer.forward(ids.double()), expected)


def test_embedding_gradient_adds_every_use_of_an_id():
    layer = Embedding(2, gaussian, 4, torch.Generator().manual_seed(0), dtype=torch.float64)
    layer.forward(torch.tensor([[1.0, 1.0, 3.0]]))
    layer.backward(torch.ones(1, 3, 2, dtype=torch.float64))
    assert layer.weight.grad.tolist() == [[0, 0], [2, 2], [0, 0], [1, 1]]


def test_embedding_refuses_an_id_outside_the_vocabulary():
    from core import ShapeError

    layer = Embedding(2, gaussian, 4, dtype=torch.float64)
    with pytest.raises(ShapeError, match="token id 4 is outside the vocabulary 0..3"):
        layer.forward(torch.tensor([[1.0, 4.0]]))


def test_position_adds_its_rows_in_order_and_takes_shorter_inputs():
    layer = PositionEmbedding((4, 3), gaussian, torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.randn(2, 2, 3, dtype=torch.float64)
    assert torch.equal(layer.forward(x), x + layer.weight.value[:2])


@pytest.mark.parametrize("heads", [1, 2, 3])
def test_attention_forward_is_torchs_causal_scaled_dot_product(heads):
    g = torch.Generator().manual_seed(1)
    layer = CausalSelfAttention((5, 6), gaussian, heads=heads, generator=g, dtype=torch.float64)
    for p in layer.parameters():
        p.value.add_(torch.randn(p.value.shape, generator=g, dtype=torch.float64) * 0.1)
    x = torch.randn(3, 5, 6, generator=g, dtype=torch.float64)
    q, k, v = (x @ layer.qkv_weight.value + layer.qkv_bias.value).split(6, dim=-1)
    split = lambda t: t.view(3, 5, heads, 6 // heads).transpose(1, 2)  # noqa: E731
    y = F.scaled_dot_product_attention(split(q), split(k), split(v), is_causal=True)
    expected = y.transpose(1, 2).reshape(3, 5, 6) @ layer.out_weight.value + layer.out_bias.value
    torch.testing.assert_close(layer.forward(x), expected, rtol=1e-12, atol=1e-12)


def test_attention_sees_no_later_position():
    layer = CausalSelfAttention((6, 4), gaussian, heads=2, generator=torch.Generator().manual_seed(0),
                                dtype=torch.float64)
    x = torch.randn(1, 6, 4, dtype=torch.float64)
    changed = x.clone()
    changed[:, 4:] += 1.0
    assert torch.equal(layer.forward(x)[:, :4], layer.forward(changed)[:, :4])


def test_attention_key_value_cache_gives_the_full_forward():
    g = torch.Generator().manual_seed(2)
    layer = CausalSelfAttention((8, 6), gaussian, heads=3, generator=g, dtype=torch.float64)
    layer.train(False)
    x = torch.randn(2, 8, 6, generator=g, dtype=torch.float64)
    full = layer.forward(x)
    layer.start_cache(2)
    pieces = [layer.forward(x[:, :3])] + [layer.forward(x[:, t:t + 1]) for t in range(3, 8)]
    layer.stop_cache()
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-12, atol=1e-12)


def test_attention_weights_are_a_stable_causal_softmax():
    layer = CausalSelfAttention((3, 2), gaussian, dtype=torch.float64)
    q = torch.tensor([[[1e3, 0.0], [1e3, 0.0], [-1e3, 1.0]]], dtype=torch.float64)  # (1, 3, 2)
    k = torch.tensor([[[1e3, 0.0], [-1e3, 0.0], [5.0, 1e3]]], dtype=torch.float64)
    weights, _ = layer.weights(q, k, 3)
    scores = (q @ k.mT) * layer.scale + torch.full((3, 3), float("-inf")).triu(1)
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(weights, torch.softmax(scores, -1), rtol=0, atol=1e-15)
    assert weights[0, 0].tolist() == [1.0, 0.0, 0.0]  # the first position sees only itself


def test_attention_refuses_heads_that_do_not_divide_the_width():
    with pytest.raises(ValueError, match="divides the width 6"):
        CausalSelfAttention((4, 6), gaussian, heads=4)


def test_scale_is_one_over_root_head_width():
    layer = CausalSelfAttention((4, 12), gaussian, heads=3)
    assert layer.scale == 1 / math.sqrt(4)


@pytest.mark.parametrize("batch,time,vocab", [(1, 1, 2), (3, 5, 7), (2, 4, 13)])
def test_token_cross_entropy_is_torchs_over_every_position(batch, time, vocab):
    from plugins.losses import TokenCrossEntropy

    g = torch.Generator().manual_seed(batch + time)
    logits = torch.randn(batch, time, vocab, generator=g, dtype=torch.float64) * 3
    ids = torch.randint(0, vocab, (batch, time), generator=g)
    leaf = logits.clone().requires_grad_(True)
    expected = F.cross_entropy(leaf.reshape(-1, vocab), ids.reshape(-1))
    (expected_grad,) = torch.autograd.grad(expected, leaf)
    loss = TokenCrossEntropy()
    torch.testing.assert_close(loss.forward(logits, ids.double()), expected.detach(), rtol=1e-13, atol=0)
    torch.testing.assert_close(loss.backward(), expected_grad, rtol=1e-12, atol=1e-15)


def test_token_cross_entropy_is_finite_at_huge_logits():
    from plugins.losses import TokenCrossEntropy

    logits = torch.tensor([[[1e4, -1e4, 0.0]]], dtype=torch.float64)
    value = TokenCrossEntropy().forward(logits, torch.tensor([[1.0]]))
    assert value.item() == pytest.approx(2e4)
