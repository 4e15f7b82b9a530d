"""Sampling's decode path (core/network/sampling.py): each layer's `decode`, used while a
key/value cache is on, gives what its `forward` gives, keeps nothing for a backward, and the
one-draw sampler draws what torch.multinomial draws for the same generator."""

from __future__ import annotations

import pytest
import torch

from core import build_stack, parse_layers
from core.network.sampling import Sampling, decoder, key_value_cache, sample, walk
from core.plugin.registry import default_registry

REGISTRY = default_registry()
GPT = ("embedding:vocab=7,width=6,position,"
       "2*transformer_block:heads=2:dropout=0.1,layernorm,linear:out=7")


def build(text: str, context: int, seed: int = 4):
    model = build_stack(REGISTRY, parse_layers(text, REGISTRY), (context,), init="xavier",
                        generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    model.train(False)
    return model


@pytest.mark.parametrize("batch", [1, 3])
def test_decoding_token_by_token_gives_the_full_forward(batch):
    model = build(GPT, 9)
    ids = torch.randint(0, 7, (batch, 9), generator=torch.Generator().manual_seed(1))
    with torch.set_grad_enabled(False):
        full = model.forward(ids.double())  # (batch, 9, 7)
        with key_value_cache(model, batch):
            decode = decoder(model, batch, torch.float64)
            pieces = [decode(ids[:, :4]).view(batch, 4, 7)]  # a prefill of 4, then one at a time
            pieces += [decode(ids[:, t:t + 1]).view(batch, 1, 7) for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-12, atol=1e-12)


def test_decode_keeps_nothing_for_a_backward():
    model = build(GPT, 5)
    layers = [m for m in walk(model) if not hasattr(m, "modules")]
    names = ("cache", "input", "ids", "mask")  # what the layers' forwards keep for backward
    for m in layers:  # building the network ran a forward
        for name in names:
            if hasattr(m, name) and not callable(getattr(m, name)):
                setattr(m, name, None)
    with torch.set_grad_enabled(False), key_value_cache(model, 1):
        decoder(model, 1, torch.float64)(torch.tensor([[1, 2, 3]]))
    kept = [(type(m).__name__, name) for m in layers for name in names
            if getattr(m, name, None) is not None and not callable(getattr(m, name))]
    assert len(layers) == 20 and kept == []  # 2 + 2 blocks of 8 + 2


def test_a_layer_without_decode_runs_its_forward():
    """tanh has no `decode`: between the layers that have one it gets (batch, time, width)."""
    model = build("embedding:vocab=5,width=4,position,residual(layernorm,attention:heads=2,tanh),"
                  "linear:out=5", 6)
    ids = torch.tensor([[1, 4, 0, 2, 3, 3]])
    with torch.set_grad_enabled(False):
        full = model.forward(ids.double())[0]
        with key_value_cache(model, 1):
            decode = decoder(model, 1, torch.float64)
            rows = torch.cat([decode(ids[:, t:t + 1]) for t in range(6)])
    torch.testing.assert_close(rows, full, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("how", [Sampling(), Sampling(temperature=0.7, top_k=3), Sampling(temperature=2.0)])
def test_one_draw_is_torch_multinomial_for_the_same_generator(how):
    logits = torch.randn(50, 11, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 3
    ours, theirs = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    for row in logits:
        scaled = row / how.temperature
        if how.top_k is not None:
            scaled = scaled.masked_fill(scaled < scaled.topk(how.top_k).values[-1], float("-inf"))
        expected = int(torch.multinomial(torch.softmax(scaled, -1), 1, generator=theirs))
        assert how.draw(row, ours) == expected


def test_one_draw_follows_the_softmax():
    """Many draws from fixed logits: each token's share is its softmax probability."""
    logits = torch.tensor([2.0, 0.0, -1.0, 1.0], dtype=torch.float64)
    g, n = torch.Generator().manual_seed(0), 20000
    counts = torch.bincount(torch.tensor([Sampling().draw(logits, g) for _ in range(n)]), minlength=4)
    expected = torch.softmax(logits, -1) * n
    # within 4 standard deviations of a binomial count
    assert ((counts - expected).abs() <= 4 * (expected * (1 - expected / n)).sqrt()).all()


def test_cached_sampling_at_batch_one_draws_what_recomputing_draws():
    model = build(GPT, 16)
    how = Sampling(temperature=0.9)
    cached = sample(model, [1, 2], 14, context=16, sampling=how, generator=torch.Generator().manual_seed(5))
    plain = sample(model, [1, 2], 14, context=16, sampling=how, generator=torch.Generator().manual_seed(5),
                   cache=False)
    assert cached == plain


def test_drawing_ahead_a_block_at_a_time_draws_what_one_at_a_time_draws(monkeypatch):
    import core.network.sampling as sampling

    monkeypatch.setattr(sampling, "RACE_BLOCK", 3)  # 10 tokens: blocks of 3, 3, 3 and 1
    model = build(GPT, 16)
    how, prompt = Sampling(temperature=0.8, top_k=4), [3, 1]
    drawn = sample(model, prompt, 10, context=16, sampling=how, generator=torch.Generator().manual_seed(2))
    ids, g = list(prompt), torch.Generator().manual_seed(2)
    with torch.set_grad_enabled(False):
        for _ in range(10):
            ids.append(how.draw(model.forward(torch.tensor([ids], dtype=torch.float64))[0, -1], g))
    assert drawn == ids[2:]


@pytest.mark.parametrize("cache", [True, False])
def test_a_diverged_network_is_refused_not_sampled(cache):
    """The draw skips torch.multinomial's checks, so NaN logits must be caught before it."""
    from core.errors import DivergenceError

    model = build(GPT, 6)
    next(iter(model.parameters())).value.fill_(float("nan"))
    with pytest.raises(DivergenceError, match="not finite"):
        sample(model, [1, 2], 4, context=6, generator=torch.Generator().manual_seed(0), cache=cache)
