"""Images batch-innermost inside a network (core/network/layout.py), batch-first at its edges.

A network built by the assembler runs its image layers on (..., channels, height, width,
batch) and converts around a layer that declares no layout; the same layers built by hand
in torch's layout must compute the same outputs and gradients, with and without runs.
"""

import inspect

import pytest
import torch

from core import LayerSpec, Sequential, build_stack, parse_layers
from core.network.assemble import build_layers
from core.network.layout import BATCH_FIRST, BATCH_INNERMOST, plan

# Every image layer once, odd sizes; layernorm takes images batch-first (no layout), so the
# network converts before it and back after it.
STACK = ("conv2d:out=5,k=3,pad=1,batchnorm,relu,conv2d:out=4,k=3,pad=1,maxpool2d:k=3,s=2,pad=1,"
         "layernorm,conv2d:out=3,k=2x3,s=1x2,pad=1x0,dilation=2x1,upsample:scale=2,avgpool2d:k=2,"
         "conv_transpose2d:out=2,k=3,s=2,output_padding=1,tanh,maxpool2d:k=2,flatten,linear:out=3")
IN_SHAPE = (2, 7, 9)


def by_hand(registry, specs):
    """The same layers built batch-first, as a user calling them would: no conversions."""
    specs = [LayerSpec(s.kind, s.name, {**s.args, "layout": BATCH_FIRST})
             if "layout" in inspect.signature(registry.get(s.kind, s.name).factory).parameters
             else s for s in specs]
    generator = torch.Generator().manual_seed(3)
    built = build_layers(registry, specs, IN_SHAPE, init="he", generator=generator, dtype=torch.float64)
    return Sequential(*(m for m, _ in built))


@pytest.mark.parametrize("runs", [None, 2])
def test_a_network_batch_innermost_computes_what_its_layers_compute_batch_first(registry, runs):
    specs = parse_layers(STACK, registry)
    ours = build_stack(registry, specs, IN_SHAPE, init="he", generator=torch.Generator().manual_seed(3),
                       dtype=torch.float64, runs=runs)
    assert ours.conversions[0] == BATCH_INNERMOST and ours.conversions[5] == BATCH_FIRST
    assert ours.conversions[6] == BATCH_INNERMOST  # back after layernorm
    assert getattr(ours.modules[0], "layout") == BATCH_INNERMOST
    hand = by_hand(registry, specs)
    lead = () if runs is None else (runs,)
    for p, q in zip(ours.parameters(), hand.parameters(), strict=True):  # the same weights per run
        p.value.copy_(q.value.expand(*lead, *q.value.shape))
    x = torch.randn(*lead, 3, *IN_SHAPE, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    out = ours.forward(x)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    grad_x = ours.backward(upstream)
    for r in range(runs or 1):
        at = (r,) if runs else ()
        hand.zero_grad()
        torch.testing.assert_close(out[at], hand.forward(x[at]), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(grad_x[at], hand.backward(upstream[at]), rtol=1e-12, atol=1e-12)
        for p, q in zip(ours.parameters(), hand.parameters()):
            torch.testing.assert_close(p.grad[at], q.grad, rtol=1e-11, atol=1e-12)


def test_plan_converts_only_where_a_layer_takes_another_layout():
    chwn, nchw, any_ = BATCH_INNERMOST, BATCH_FIRST, "any"
    # conv, relu, a plugin's image layer, pool, flatten, linear; images out of the plugin
    assert plan([chwn, any_, nchw, chwn, chwn, nchw], [True] * 5 + [False], False) == (
        [chwn, None, nchw, chwn, None, None], None)
    # an image output (a denoiser) leaves batch-first
    assert plan([chwn, any_], [True, True], True) == ([chwn, None], nchw)
    assert plan([nchw, any_], [True, True], True) == ([None, None], None)


def test_the_network_takes_and_gives_rows_and_its_summary_shapes_are_batch_first(registry):
    from core.network.assemble import build_flat_stack
    from core.network.summary import layer_table

    specs = parse_layers("conv2d:out=4,k=3,pad=1,relu,conv2d:out=6,k=3,pad=1,upsample:scale=2", registry)
    model = build_flat_stack(registry, specs, (1, 4, 5), init="he",
                             generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = torch.randn(3, 20, dtype=torch.float64)
    out = model.forward(rows)
    assert out.shape == (3, 6 * 8 * 10) and model.final_conversion == BATCH_FIRST
    images = model.modules[3].forward(model.modules[2].forward(model.modules[1].forward(
        model.modules[0].forward(rows.view(3, 1, 4, 5).movedim(0, -1).contiguous()))))
    torch.testing.assert_close(out, images.movedim(-1, 0).reshape(3, -1), rtol=0, atol=0)
    assert [r["output_shape"] for r in layer_table(model, specs, (1, 4, 5), torch.float64)] == [
        [4, 4, 5], [4, 4, 5], [6, 4, 5], [6, 8, 10]]
