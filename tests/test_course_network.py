"""The course's denoiser, assembled by name, against the same network in torch.nn.

Sequential(Conv(stride 2), ReLU, Conv(stride 2), ReLU, Upsampling, ReLU, Upsampling,
Sigmoid), where each Upsampling is a nearest upsampling followed by a convolution (or a
transposed convolution): both sides start from the same weights, take 20 SGD steps on
the same batches with MSE, and must end with the same weights (float64, 1e-10).
"""

import pytest
import torch

from core import build_stack, fit, parse_layers

# The course's images are 3 x 32 x 32; these are smaller so the test stays quick.
IN_SHAPE = (3, 16, 16)
COURSE = {
    "nearest upsampling + conv": (
        "conv2d:out=8,k=3,stride=2,pad=1,relu,conv2d:out=16,k=3,stride=2,pad=1,relu,"
        "upsample:scale=2,conv2d:out=8,k=3,pad=1,relu,upsample:scale=2,conv2d:out=3,k=3,pad=1,"
        "sigmoid,flatten"
    ),
    "transposed convolution": (
        "conv2d:out=8,k=2,stride=2,relu,conv2d:out=16,k=2,stride=2,relu,"
        "conv_transpose2d:out=8,k=2,stride=2,relu,conv_transpose2d:out=3,k=2,stride=2,sigmoid,"
        "flatten"
    ),
}


def torch_twin(ours):
    """torch.nn layers holding our network's exact weights (torch's layouts are ours)."""
    layers = []
    for module in ours.modules:
        kind = type(module).__name__
        if kind in ("Conv2d", "ConvTranspose2d"):
            layer = getattr(torch.nn, kind)(
                module.in_channels, module.out_channels, module.kernel_size, module.stride,
                module.padding, dtype=torch.float64)
            with torch.no_grad():
                layer.weight.copy_(module.weight.value)
                layer.bias.copy_(module.bias.value)
        elif kind == "Upsample":
            layer = torch.nn.Upsample(scale_factor=module.scale_factor, mode="nearest")
        else:
            layer = {"ReLU": torch.nn.ReLU, "Sigmoid": torch.nn.Sigmoid,
                     "Flatten": torch.nn.Flatten}[kind]()
        layers.append(layer)
    return torch.nn.Sequential(*layers)


@pytest.mark.parametrize("variant", sorted(COURSE))
def test_twenty_sgd_steps_agree_with_torch_nn(registry, variant):
    gen = torch.Generator().manual_seed(7)
    ours = build_stack(registry, parse_layers(COURSE[variant], registry), IN_SHAPE, init="he",
                       generator=gen, dtype=torch.float64)
    theirs = torch_twin(ours)
    steps, batch = 20, 4
    clean = torch.rand(steps * batch, *IN_SHAPE, generator=gen, dtype=torch.float64)
    noisy = clean + 0.2 * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    target = clean.flatten(1)  # the networks end with flatten: MSE over every pixel

    lr, momentum = 0.5, 0.9
    fit(ours, registry.create("loss", "mse"),
        registry.create("optimizer", "sgd", parameters=ours.parameters(), lr=lr, momentum=momentum),
        noisy, target, epochs=1, batch_size=batch, generator=torch.Generator().manual_seed(3))
    # torch.nn sees the same batches: the order fit drew from the same generator
    order = torch.randperm(len(noisy), generator=torch.Generator().manual_seed(3))
    optimizer = torch.optim.SGD(theirs.parameters(), lr=lr, momentum=momentum)
    with torch.enable_grad():
        for start in range(0, len(noisy), batch):
            rows = order[start:start + batch]
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(theirs(noisy[rows]), target[rows]).backward()
            optimizer.step()

    theirs_weights = [p.detach() for p in theirs.parameters()]
    ours_weights = [p.value for p in ours.parameters()]
    assert len(ours_weights) == len(theirs_weights) == 8
    moved = max((w - w0).abs().max().item() for w, w0 in zip(ours_weights, ours_start(variant, registry)))
    assert moved > 1e-3  # the steps did change the weights
    for a, b in zip(ours_weights, theirs_weights):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def ours_start(variant, registry):
    gen = torch.Generator().manual_seed(7)
    start = build_stack(registry, parse_layers(COURSE[variant], registry), IN_SHAPE, init="he",
                        generator=gen, dtype=torch.float64)
    return [p.value for p in start.parameters()]
