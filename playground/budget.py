"""What one run will hold in memory, counted before it trains, and the slices it draws in.

A run's weights are bounded by LIMITS["max_parameters"], but its activations are not: a
layers text of 74 `tanh` after a 256-wide layer has no more weights than one layer, yet each
row through it leaves 19,000 numbers in the modules' caches. So a run is measured by the
numbers one row leaves behind (`numbers_per_row`), and refused (ConfigError, a 400) when
the rows it will hold at once, its weights and its data pass LIMITS["max_run_megabytes"].
Drawing (the loss and error of each set, the heat map) runs the network over slices of at
most DRAW_NUMBERS cached numbers, so a 200 x 200 heat map costs what a few rows do.
"""

from __future__ import annotations

import torch

DRAW_NUMBERS = 2**20  # cached numbers in one slice of a drawing forward (4 MB of float32)
MIN_DRAW_ROWS = 64  # never thinner slices than this: a forward per row is slow
# Per cached number of a training forward, what else a step holds: the backward's gradient
# of each activation (about as large) while the caches are still alive.
TRAINING_COPIES = 2
# Per weight: the trained network's value and gradient, the painter's copy and the
# optimizer's state (Adam: two moments), with one to spare.
WEIGHT_COPIES = 6


def numbers_per_row(network, in_features: int, dtype: torch.dtype) -> int:
    """The numbers one row of input leaves in `network`'s caches: its input and every
    module's output (each module keeps about its input or its output for backward)."""
    x = torch.zeros(1, in_features, dtype=dtype)  # (1, in)
    total = x.numel()
    if getattr(network, "input_shape", None):  # built for images (a CNN): in their layout
        # NOTE: a convolution keeps more than its input for backward (its input padded, or
        # transformed into tiles), and some of it is per weight, not per row: an image
        # network is counted by what its outputs and caches grow by from one row to two.
        def held(rows: int) -> int:
            images = torch.zeros(rows, *network.input_shape, dtype=dtype)  # (rows, c, h, w)
            with torch.set_grad_enabled(False):
                outputs = sum(out.numel() for out in network.outputs(images))
            return outputs + sum(_held(module) for module in network.modules)

        return total + held(2) - held(1)
    with torch.set_grad_enabled(False):
        for module in getattr(network, "modules", [network]):
            x = module.forward(x)
            total += x.numel()
    return total


def _held(value, depth: int = 0) -> int:
    """The numbers in the tensors a module keeps (its caches), in its attributes and in
    the tuples, lists and dicts among them; its weights are Parameters, not counted."""
    if isinstance(value, torch.Tensor):
        return value.numel()
    if depth > 3:
        return 0
    if isinstance(value, (tuple, list)):
        return sum(_held(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return sum(_held(item, depth + 1) for item in value.values())
    if depth == 0:
        return _held(vars(value), depth + 1) if hasattr(value, "__dict__") else 0
    return 0


def run_bytes(per_row: int, *, batch: int, parameters: int, points: int, cells: int,
              in_features: int, out_features: int, element: int) -> int:
    """What a run will hold at most: a training step's activations and gradients, its
    weights with their copies, its data and heat-map grid, and one drawing slice."""
    training = per_row * batch * TRAINING_COPIES
    drawing = max(DRAW_NUMBERS, per_row * MIN_DRAW_ROWS) * TRAINING_COPIES
    # The points as drawn and prepared, a shuffled copy per epoch; the grid and its output.
    data = points * (in_features + out_features) * 3 + cells * (in_features + out_features + 2)
    return element * (training + drawing + parameters * WEIGHT_COPIES + data)


def draw_rows(per_row: int) -> int:
    """Rows per slice of a drawing forward."""
    return max(MIN_DRAW_ROWS, DRAW_NUMBERS // max(per_row, 1))


def forward_in_slices(network, x: torch.Tensor, rows: int, stopped=None) -> torch.Tensor | None:
    """`network.forward(x)` for x (n, in), `rows` at a time (each row's output is its own in
    evaluation); None as soon as `stopped()` says the run has ended."""
    if x.shape[0] <= rows:
        return network.forward(x)
    parts = []
    for part in torch.split(x, rows):
        if stopped is not None and stopped():
            return None
        parts.append(network.forward(part))  # (rows, out)
    return torch.cat(parts)  # (n, out)
