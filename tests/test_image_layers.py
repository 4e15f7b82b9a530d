"""The image layers: the kit's autograd checks at awkward sizes, and the same values as torch.nn.

The kit (nn_testing.check_module) differentiates each layer's own forward with autograd
and checks the hand-written backward against it, in both modes, with and without a run
dimension. The tests below it check the forward itself against torch.nn.functional, so
a layer that computes the wrong function consistently is caught too.
"""

import pytest
import torch
import torch.nn.functional as F

from core import ShapeError, StateError, evaluating
from nn_testing import CheckFailed, check_module
import plugins.conv.im2col as conv_module
from plugins.conv import Conv2d, ConvTranspose2d
from plugins.normalization import BatchNorm, Dropout, LayerNorm
from plugins.pooling import AvgPool2d, Flatten, MaxPool2d, Upsample

TIGHT = dict(rtol=1e-12, atol=1e-12)
BATCHES = (1, 2)  # batch 1 on every layer; batchnorm needs 2 values per channel, so 1 x 1 pixel takes 2

# (factory, per-sample input shape, arguments): odd sizes, strides, paddings and dilations;
# kernels larger than the stride, padding larger than half the kernel.
KIT_CASES = {
    "conv2d 3x3 pad 1": (Conv2d, (2, 7, 9), dict(out_channels=3, kernel_size=3, padding=1)),
    "conv2d stride 2 dilation 2 pad 3": (
        Conv2d, (3, 11, 8), dict(out_channels=2, kernel_size=3, stride=2, padding=3, dilation=2)),
    "conv2d kernel 5 stride 3 pad 4": (
        Conv2d, (1, 9, 10), dict(out_channels=4, kernel_size=5, stride=3, padding=4)),
    "conv2d 1x1": (Conv2d, (5, 3, 3), dict(out_channels=2, kernel_size=1)),
    # Winograd F(4x4,3x3): one tile, several tiles with a cropped edge, no padding, wide padding
    "conv2d winograd 4x4 pad 1": (Conv2d, (4, 4, 4), dict(out_channels=3, kernel_size=3, padding=1)),
    "conv2d winograd one tile 3x4 pad 1": (Conv2d, (4, 3, 4), dict(out_channels=2, kernel_size=3, padding=1)),
    "conv2d winograd one tile 2x2 pad 2": (Conv2d, (4, 2, 2), dict(out_channels=2, kernel_size=3, padding=2)),
    "conv2d winograd 7x9 pad 1": (Conv2d, (5, 7, 9), dict(out_channels=2, kernel_size=3, padding=1)),
    "conv2d winograd 6x5 pad 0": (Conv2d, (4, 6, 5), dict(out_channels=2, kernel_size=3)),
    "conv2d winograd 3x2 pad 2 no bias": (
        Conv2d, (4, 3, 2), dict(out_channels=2, kernel_size=3, padding=2, bias=False)),
    # the course's interface: (h, w) pairs, bias switched off
    "conv2d 2x3 stride 2x3 pad 1x0 no bias": (
        Conv2d, (3, 7, 11), dict(out_channels=4, kernel_size=(2, 3), stride=(2, 3), padding=(1, 0),
                                 bias=False)),
    "conv2d 3x1 dilation 1x2": (Conv2d, (2, 6, 7), dict(out_channels=2, kernel_size=(3, 1), dilation=(1, 2))),
    "conv_transpose2d 2x3 stride 1x2 no bias": (
        ConvTranspose2d, (2, 3, 4), dict(out_channels=3, kernel_size=(2, 3), stride=(1, 2), bias=False)),
    "maxpool2d 2x3 stride 1x2 pad 1x1": (MaxPool2d, (2, 5, 6), dict(kernel_size=(2, 3), stride=(1, 2), padding=1)),
    "avgpool2d 3x2 pad 1x0": (AvgPool2d, (2, 6, 5), dict(kernel_size=(3, 2), padding=(1, 0))),
    "conv_transpose2d stride 2": (ConvTranspose2d, (3, 4, 5), dict(out_channels=2, kernel_size=3, stride=2)),
    "conv_transpose2d stride 3 pad 2 outpad 1 dilation 2": (
        ConvTranspose2d, (2, 5, 3),
        dict(out_channels=3, kernel_size=4, stride=3, padding=2, output_padding=1, dilation=2)),
    "maxpool2d 2": (MaxPool2d, (2, 8, 7), dict(kernel_size=2)),
    "maxpool2d 2 tiling the input": (MaxPool2d, (2, 6, 4), dict(kernel_size=2)),
    "maxpool2d 2 pad 1": (MaxPool2d, (2, 5, 6), dict(kernel_size=2, padding=1)),
    "maxpool2d 3 stride 2 pad 1": (MaxPool2d, (3, 9, 6), dict(kernel_size=3, stride=2, padding=1)),
    "avgpool2d 3 stride 2 pad 1": (AvgPool2d, (2, 7, 8), dict(kernel_size=3, stride=2, padding=1)),
    "avgpool2d 2": (AvgPool2d, (1, 5, 5), dict(kernel_size=2)),
    "upsample 2": (Upsample, (2, 3, 5), dict(scale_factor=2)),
    "upsample 3": (Upsample, (1, 4, 3), dict(scale_factor=3)),
    "flatten images": (Flatten, (3, 4, 5), {}),
    "batchnorm 2-D": (BatchNorm, (3, 5, 4), {}),
    "batchnorm 1-D": (BatchNorm, (6,), {}),
    "layernorm images": (LayerNorm, (2, 3, 5), {}),
    "layernorm features": (LayerNorm, (7,), {}),
    "dropout": (Dropout, (3, 4, 4), dict(p=0.3)),
    "dropout p=0": (Dropout, (5,), dict(p=0.0)),
}


@pytest.mark.parametrize("case", sorted(KIT_CASES))
def test_kit_passes_image_layer(case):
    factory, shape, args = KIT_CASES[case]
    batches = (2, 3) if factory is BatchNorm and len(shape) == 1 else BATCHES
    check_module(factory, in_shape=shape, batch_sizes=batches, **args)


@pytest.mark.parametrize("args", [dict(negative_slope=0.2), {}])
def test_kit_passes_leaky_relu(registry, args):
    check_module("leaky_relu", registry=registry, **args)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_kit_passes_gelu(registry, approximate):
    check_module("gelu", registry=registry, approximate=approximate)


class BatchNormForgetsTheMeanGradient(BatchNorm):
    """The planted mistake: backward as if the batch statistics were constants."""

    def backward(self, grad_output):
        normalised, inv_std, reduce, view, _ = self.cache
        self.cache = (normalised, inv_std, reduce, view, False)
        return super().backward(grad_output)


def test_kit_catches_batchnorm_that_treats_batch_statistics_as_constants():
    with pytest.raises(CheckFailed, match="input gradient vs autograd .*in training"):
        check_module(BatchNormForgetsTheMeanGradient, in_shape=(2, 3, 3), batch_sizes=(2,))


class ConvWithoutRuns(Conv2d):
    """Claims runs but mixes them: every run uses run 0's weights."""

    def forward(self, x):
        weight = self.weight.value
        if weight.dim() == 5:  # (runs, out, in, k, k): every run gets run 0's
            self.weight.value = weight[:1].expand_as(weight)
        try:
            return super().forward(x)
        finally:
            self.weight.value = weight


def test_kit_catches_a_layer_that_mixes_its_runs():
    with pytest.raises(CheckFailed, match="3 runs"):
        check_module(ConvWithoutRuns, in_shape=(2, 5, 5), out_channels=2, kernel_size=3)


# -- the forward against torch.nn.functional --------------------------------------------------------

def gaussian(weight, fan_in, fan_out, generator):
    weight.copy_(torch.randn(weight.shape, generator=generator, dtype=weight.dtype))


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("k,s,p,d", [(3, 1, 1, 1), (3, 2, 3, 2), (5, 3, 4, 1), (2, 2, 0, 1)])
def test_conv2d_computes_torch_conv2d(k, s, p, d):
    conv = Conv2d(3, 4, k, s, p, d, init=gaussian, generator=torch.Generator().manual_seed(1),
                  dtype=torch.float64)
    conv.bias.value.copy_(randn(4, seed=2))
    x = randn(1, 3, 11, 9)
    expected = F.conv2d(x, conv.weight.value, conv.bias.value, s, p, d)
    torch.testing.assert_close(conv.forward(x), expected, **TIGHT)


@pytest.mark.parametrize("k,s,p,op,d", [(3, 2, 0, 0, 1), (4, 3, 2, 1, 2), (2, 2, 0, 1, 1)])
def test_conv_transpose2d_computes_torch_conv_transpose2d(k, s, p, op, d):
    conv = ConvTranspose2d(3, 2, k, s, p, op, d, init=gaussian,
                           generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    conv.bias.value.copy_(randn(2, seed=2))
    x = randn(2, 3, 5, 4)
    expected = F.conv_transpose2d(x, conv.weight.value, conv.bias.value, s, p, op, dilation=d)
    torch.testing.assert_close(conv.forward(x), expected, **TIGHT)


@pytest.mark.parametrize("k,s,p", [(2, None, 0), (3, 2, 1), (3, 1, 1)])
def test_pools_compute_torch_pools(k, s, p):
    x = randn(2, 3, 9, 7)
    torch.testing.assert_close(MaxPool2d(k, s, p).forward(x), F.max_pool2d(x, k, s, p), **TIGHT)
    torch.testing.assert_close(AvgPool2d(k, s, p).forward(x), F.avg_pool2d(x, k, s, p), **TIGHT)


def test_maxpool_padding_never_wins_over_negative_values():
    x = -1 - randn(1, 1, 4, 4).abs()  # every value below the zero that unfold would pad with
    torch.testing.assert_close(MaxPool2d(3, 2, 1).forward(x), F.max_pool2d(x, 3, 2, 1), **TIGHT)


def test_upsample_is_torch_nearest():
    x = randn(2, 3, 4, 5)
    expected = F.interpolate(x, scale_factor=3, mode="nearest")
    torch.testing.assert_close(Upsample(3).forward(x), expected, **TIGHT)


def test_batchnorm_matches_torch_in_both_modes_and_keeps_running_statistics():
    ours = BatchNorm(3, momentum=0.2, dtype=torch.float64)
    theirs = torch.nn.BatchNorm2d(3, momentum=0.2, dtype=torch.float64)
    for seed in range(3):
        x = randn(4, 3, 5, 5, seed=seed) * 2 + 1
        torch.testing.assert_close(ours.forward(x), theirs(x).detach(), **TIGHT)
    torch.testing.assert_close(ours.running_mean, theirs.running_mean, **TIGHT)
    torch.testing.assert_close(ours.running_var, theirs.running_var, **TIGHT)
    ours.eval(), theirs.eval()
    x = randn(2, 3, 5, 5, seed=9)
    torch.testing.assert_close(ours.forward(x), theirs(x).detach(), **TIGHT)
    assert set(ours.buffers()) == {"running_mean", "running_var"}


def test_batchnorm1d_matches_torch():
    ours, theirs = BatchNorm(5, dtype=torch.float64), torch.nn.BatchNorm1d(5, dtype=torch.float64)
    x = randn(6, 5)
    torch.testing.assert_close(ours.forward(x), theirs(x).detach(), **TIGHT)
    torch.testing.assert_close(ours.running_var, theirs.running_var, **TIGHT)


def test_batchnorm_refuses_one_value_per_channel_in_training_but_not_in_evaluation():
    bn = BatchNorm(4, dtype=torch.float64)
    with pytest.raises(ShapeError, match="more than one value per channel"):
        bn.forward(randn(1, 4))
    with evaluating(bn):
        assert bn.forward(randn(1, 4)).shape == (1, 4)


def test_layernorm_matches_torch():
    ours = LayerNorm((3, 4, 5), dtype=torch.float64)
    ours.weight.value.copy_(randn(3, 4, 5, seed=1))
    ours.bias.value.copy_(randn(3, 4, 5, seed=2))
    x = randn(2, 3, 4, 5, seed=3)
    expected = F.layer_norm(x, (3, 4, 5), ours.weight.value, ours.bias.value)
    torch.testing.assert_close(ours.forward(x), expected, **TIGHT)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_and_leaky_relu_compute_torch(registry, approximate):
    x = randn(7, 5) * 3
    gelu = registry.create("activation", "gelu", approximate=approximate)
    torch.testing.assert_close(gelu.forward(x), F.gelu(x, approximate=approximate), **TIGHT)
    leaky = registry.create("activation", "leaky_relu", negative_slope=0.1)
    torch.testing.assert_close(leaky.forward(x), F.leaky_relu(x, 0.1), **TIGHT)


def test_leaky_relu_at_exactly_zero_has_the_slope_as_gradient_like_torch(registry):
    x = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    F.leaky_relu(x, 0.1).backward(torch.ones(1, 3, dtype=torch.float64))
    leaky = registry.create("activation", "leaky_relu", negative_slope=0.1)
    leaky.forward(x.detach())
    assert torch.equal(leaky.backward(torch.ones(1, 3, dtype=torch.float64)), x.grad)


def test_dropout_is_seeded_scaled_and_off_in_evaluation():
    def run(seed):
        dropout = Dropout(0.25, generator=torch.Generator().manual_seed(seed))
        return dropout, dropout.forward(torch.ones(200, 50, dtype=torch.float64))

    dropout, y = run(5)
    assert torch.equal(y, run(5)[1])  # the same seed, the same mask
    assert not torch.equal(y, run(6)[1])
    assert set(y.unique().tolist()) == {0.0, 1 / 0.75}
    assert abs((y == 0).double().mean().item() - 0.25) < 0.02
    upstream = randn(200, 50)
    assert torch.equal(dropout.backward(upstream), upstream * y)  # y is the mask itself here
    dropout.eval()
    x = randn(3, 4)
    assert dropout.forward(x) is x and dropout.backward(x) is x


@pytest.mark.parametrize("layer", [
    Conv2d(1, 1, 3, init=gaussian, dtype=torch.float64), ConvTranspose2d(1, 1, 3, init=gaussian),
    MaxPool2d(2), AvgPool2d(2), Upsample(2), Flatten(), BatchNorm(2), LayerNorm((2,)), Dropout(0.5),
], ids=type)
def test_backward_before_forward_is_a_state_error(layer):
    with pytest.raises(StateError, match="before forward"):
        layer.backward(torch.zeros(1, 1, 2, 2))


@pytest.mark.parametrize("case", [c for c in sorted(KIT_CASES) if c.startswith("conv2d")])
def test_kit_passes_conv2d_a_share_of_the_batch_at_a_time(case, monkeypatch):
    # A budget below one image's columns: forward and backward go one image at a time,
    # the path a large batch (evaluation, an ensemble's training set) takes.
    monkeypatch.setattr(conv_module, "COLUMN_BUDGET", 1)
    factory, shape, args = KIT_CASES[case]
    check_module(factory, in_shape=shape, batch_sizes=(1, 3), **args)


@pytest.mark.parametrize("layer", [
    Conv2d(1, 1, 3, init=gaussian, dtype=torch.float64), ConvTranspose2d(1, 1, 3, init=gaussian,
    dtype=torch.float64), MaxPool2d(2), BatchNorm(1), Dropout(0.5), AvgPool2d(2), Upsample(2),
    Flatten(),
], ids=type)
def test_a_second_backward_for_one_forward_is_a_state_error(layer):
    # Each layer drops its cache once backward has used it: memory comes back at once.
    for p in layer.parameters():
        p.grad = torch.zeros_like(p.value)
    out = layer.forward(randn(2, 1, 4, 4))
    layer.backward(torch.ones_like(out))
    with pytest.raises(StateError, match="each forward allows one backward"):
        layer.backward(torch.ones_like(out))


def test_conv2d_names_the_shapes_it_cannot_take():
    conv = Conv2d(2, 3, 5, init=gaussian, dtype=torch.float64)
    with pytest.raises(ShapeError, match="does not fit a 3x3 input"):
        conv.forward(randn(1, 2, 3, 3))
    with pytest.raises(ShapeError, match="images of 2 channels"):
        conv.forward(randn(1, 3, 8, 8))
    with pytest.raises(ShapeError, match="cannot follow flatten"):
        MaxPool2d(2).forward(randn(4, 10))


@pytest.mark.parametrize("k,s,p", [(2, None, 0), (2, None, 1), (3, 2, 1), (3, None, 0)])
def test_maxpool_routes_ties_to_the_first_maximum_like_torch(k, s, p):
    # Ties are the rule after a relu (windows of zeros): the gradient goes to the first.
    x = randn(2, 3, 6, 6).round().clamp(min=0).requires_grad_()
    grad = randn(*F.max_pool2d(x, k, s, p).shape, seed=3)
    F.max_pool2d(x, k, s, p).backward(grad)
    pool = MaxPool2d(k, s, p)
    pool.forward(x.detach())
    torch.testing.assert_close(pool.backward(grad), x.grad, **TIGHT)


def stack_of(*names_and_args):
    from core import Sequential

    generator = torch.Generator().manual_seed(4)
    modules = [factory(*args, init=gaussian, generator=generator, dtype=torch.float64)
               if factory in (Conv2d,) else factory(*args) for factory, *args in names_and_args]
    return Sequential(*modules)


@pytest.mark.parametrize("first_has_parameters", [True, False])
def test_no_input_grad_skips_the_input_gradient_and_keeps_the_parameter_gradients(first_has_parameters):
    from core import no_input_grad

    layers = [(Conv2d, 2, 3, 3, 1, 1), (MaxPool2d, 2), (Conv2d, 3, 2, 3)]
    net = stack_of(*(layers if first_has_parameters else [(MaxPool2d, 2), *layers]))
    x, seed = randn(2, 2, 12, 12), 5
    grad = randn(*net.forward(x).shape, seed=seed)
    grad_x = net.backward(grad)
    assert grad_x is not None and grad_x.shape == x.shape
    expected = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    with no_input_grad(net):
        net.forward(x)
        assert net.backward(grad) is None
    for p, want in zip(net.parameters(), expected):
        torch.testing.assert_close(p.grad, want, **TIGHT)
    # after the block every module gives its input gradient again
    assert net.needs_input_grad and all(getattr(m, "needs_input_grad", True) for m in net.modules)
    net.zero_grad()
    net.forward(x)
    torch.testing.assert_close(net.backward(grad), grad_x, **TIGHT)


def torch_gradient(function, x, upstream_seed=3):
    """torch's output and input gradient of `function` at x, under a random upstream gradient."""
    x = x.clone().requires_grad_()
    out = function(x)
    upstream = randn(*out.shape, seed=upstream_seed)
    out.backward(upstream)
    return out.detach(), x.grad, upstream


@pytest.mark.parametrize("k,s,p,op,d", [(3, 1, 0, 1, 2), (3, 2, 1, 2, 3), (2, 1, 1, 1, 2), (3, 1, 0, 0, 1)])
def test_conv_transpose2d_takes_output_padding_at_or_above_the_stride_like_torch(k, s, p, op, d):
    # Issue 22, item 3: fold refused these (output_padding >= stride), though the
    # constructor accepts output_padding < max(stride, dilation), as torch does.
    conv = ConvTranspose2d(2, 3, k, s, p, op, d, init=gaussian,
                           generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    conv.bias.value.copy_(randn(3, seed=2))
    x = randn(5, 2, 3, 4)
    expected, grad_x, upstream = torch_gradient(
        lambda t: F.conv_transpose2d(t, conv.weight.value, conv.bias.value, s, p, op, dilation=d), x)
    torch.testing.assert_close(conv.forward(x), expected, **TIGHT)
    for q in conv.parameters():
        q.grad = torch.zeros_like(q.value)
    torch.testing.assert_close(conv.backward(upstream), grad_x, **TIGHT)
    check_module(ConvTranspose2d, in_shape=(2, 3, 4), batch_sizes=(1, 2), out_channels=3,
                 kernel_size=k, stride=s, padding=p, output_padding=op, dilation=d)


def test_conv_transpose2d_gives_torch_shape_for_the_issue_case():
    conv = ConvTranspose2d(2, 3, 3, stride=1, output_padding=1, dilation=2, init=gaussian,
                           dtype=torch.float64)
    assert conv.forward(randn(5, 2, 3, 4)).shape == (5, 3, 8, 9)


NAN, INF = float("nan"), float("inf")
# Windows torch's max pooling resolves in a particular way: every real pixel -inf (the
# padding must not win the tie), NaN (the last NaN of the window wins, the output NaN),
# NaN beside +inf, ties.
AWKWARD_IMAGES = {
    "all -inf": [[-INF, -INF], [-INF, -INF]],
    "one nan": [[1.0, NAN], [2.0, 3.0]],
    "two nans": [[NAN, 1.0], [NAN, 2.0]],
    "all nan": [[NAN, NAN], [NAN, NAN]],
    "nan and inf": [[5.0, NAN], [INF, 1.0]],
    "-inf and nan": [[-INF, -INF], [NAN, -INF]],
}


@pytest.mark.parametrize("layout", ["nchw", "chwn"])
@pytest.mark.parametrize("k,s,p", [(2, 2, 1), (2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 1)])
@pytest.mark.parametrize("image", sorted(AWKWARD_IMAGES))
def test_maxpool_sends_gradient_where_torch_does_on_inf_and_nan(image, k, s, p, layout):
    # Issue 22, item 4: padding never wins, NaN windows route as torch routes them; the
    # 2x2 stride-2 path and the general path both, in both layouts.
    x = torch.tensor(AWKWARD_IMAGES[image], dtype=torch.float64).view(1, 1, 2, 2)
    x = torch.cat([x, x.flip(-1), x.flip(-2).transpose(-1, -2)], dim=1)  # more placements
    x = torch.cat([x, x.flip(1)])  # a batch of 2
    expected, grad_x, upstream = torch_gradient(lambda t: F.max_pool2d(t, k, s, p), x)
    pool = MaxPool2d(k, s, p, layout=layout)
    inner = layout == "chwn"
    move = (lambda t: t.movedim(0, -1).contiguous()) if inner else (lambda t: t)
    back = (lambda t: t.movedim(-1, 0)) if inner else (lambda t: t)
    torch.testing.assert_close(back(pool.forward(move(x))), expected, equal_nan=True, **TIGHT)
    torch.testing.assert_close(back(pool.backward(move(upstream))), grad_x, **TIGHT)


def test_maxpool_all_minus_infinity_with_padding_gives_every_pixel_its_gradient():
    pool = MaxPool2d(2, 2, 1)
    pool.forward(torch.full((1, 1, 2, 2), -INF, dtype=torch.float64))
    assert pool.backward(torch.ones(1, 1, 2, 2, dtype=torch.float64)).tolist() == [[[[1.0, 1.0], [1.0, 1.0]]]]


def test_the_course_interface_takes_pairs_and_a_bias_switch_like_torch():
    # The course's own test builds exactly this and compares it with F.conv2d.
    conv = Conv2d(in_channels=3, out_channels=4, kernel_size=(2, 3), stride=(2, 3), bias=True,
                  init=gaussian, dtype=torch.float64)
    conv.bias.value.copy_(randn(4, seed=2))
    x = randn(2, 3, 9, 10)
    expected = F.conv2d(x, conv.weight.value, conv.bias.value, stride=(2, 3))
    torch.testing.assert_close(conv.forward(x), expected, **TIGHT)
    plain = Conv2d(3, 4, (2, 3), bias=False, init=gaussian, dtype=torch.float64)
    assert [p.name for p in plain.parameters()] == ["weight"]
    torch.testing.assert_close(plain.forward(x), F.conv2d(x, plain.weight.value), **TIGHT)
    x = randn(2, 3, 9, 10, seed=4)
    torch.testing.assert_close(MaxPool2d((2, 3), (1, 2), (1, 1)).forward(x),
                               F.max_pool2d(x, (2, 3), (1, 2), (1, 1)), **TIGHT)
    torch.testing.assert_close(AvgPool2d((3, 2), padding=(1, 0)).forward(x),
                               F.avg_pool2d(x, (3, 2), padding=(1, 0)), **TIGHT)


@pytest.mark.parametrize("bad", [(2, 3, 4), (0, 2), "2x", "axb", 2.5, True, (2, -1)])
def test_sizes_must_be_an_int_or_a_pair(bad):
    with pytest.raises(ShapeError, match="kernel_size must be an integer >= 1 or a pair"):
        Conv2d(1, 1, bad, init=gaussian)


class FlattenForgetsTheBatchIsInnermost(Flatten):
    """The planted mistake: batch-innermost, the gradient reshaped without moving the batch back."""

    def backward(self, grad_output):
        shape, self.in_shape = self.in_shape, None
        return grad_output.reshape(shape)


def test_kit_checks_the_batch_innermost_layout_too():
    check_module(Flatten, in_shape=(3, 4, 5))  # the layer itself passes both
    with pytest.raises(CheckFailed, match=r"\(batch-innermost\).*input gradient"):
        check_module(FlattenForgetsTheBatchIsInnermost, in_shape=(3, 4, 5))
