"""Where the batch sits in an image tensor, and the conversions between the two layouts.

Users, data, `predict` and the kit see images batch-first, (..., batch, channels, height,
width): torch's NCHW. Inside a network the image layers run batch-innermost, (..., channels,
height, width, batch): CHWN. Every element-wise copy or op in torch pays about 15 ns per
contiguous inner run, and with the batch innermost a run is a whole row of pixels times the
batch (1,024 numbers for a 4x4 image at batch 256) instead of a row of 4; convolution's
columns, its Winograd tiles and the pools' windows become long contiguous copies and
plain matrix products. An ensemble's run dimension stays in front: (runs, c, h, w, batch).

A layer that can run batch-innermost takes a `layout` argument (BATCH_FIRST by default, for
a user calling it by hand) and the assembler gives it BATCH_INNERMOST when its input is an
image. A layer that computes the same thing in any layout (the activations, dropout) says
`any_layout = True`. Any other image layer (a plugin's, or layernorm) gets batch-first
images: `plan` puts a conversion before it and after it, and the summary says so once.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.lazy import torch  # imported on first use: `nn-cli --help` starts without torch

BATCH_FIRST = "nchw"  # (..., batch, channels, height, width): torch's, the users'
BATCH_INNERMOST = "chwn"  # (..., channels, height, width, batch): the image layers' own
ANY_LAYOUT = "any"  # element-wise: whatever comes in


def to_batch_innermost(x: torch.Tensor) -> torch.Tensor:
    """(..., batch, c, h, w) -> (..., c, h, w, batch), contiguous (one copy)."""
    return x.movedim(-4, -1).contiguous()


def to_batch_first(x: torch.Tensor) -> torch.Tensor:
    """(..., c, h, w, batch) -> (..., batch, c, h, w), contiguous (one copy)."""
    return x.movedim(-1, -4).contiguous()


CONVERT = {BATCH_INNERMOST: to_batch_innermost, BATCH_FIRST: to_batch_first}
INVERSE = {BATCH_INNERMOST: BATCH_FIRST, BATCH_FIRST: BATCH_INNERMOST}


def layout_of(module) -> str:
    """The layout a module takes its images in: its `layout`, ANY_LAYOUT, or batch-first."""
    if getattr(module, "any_layout", False):
        return ANY_LAYOUT
    return getattr(module, "layout", BATCH_FIRST)


def plan(taken: Sequence[str], image_in: Sequence[bool], image_out: bool) -> tuple[list[str | None], str | None]:
    """The conversions a stack needs: one per module (the layout to convert its input to,
    or None) and one after the last module (back to batch-first, or None).

    `taken[i]` is module i's layout (`layout_of`), `image_in[i]` whether its input is an
    image; the network's input images come batch-first, its image output leaves batch-first.
    """
    current, before = BATCH_FIRST, []
    for layout, image in zip(taken, image_in, strict=True):
        convert = image and layout not in (ANY_LAYOUT, current)
        before.append(layout if convert else None)
        if convert:
            current = layout
        if not image:  # features in: images out (if any) in the module's own layout
            current = BATCH_FIRST if layout == ANY_LAYOUT else layout
    after = BATCH_FIRST if image_out and current != BATCH_FIRST else None
    return before, after


def image_sample_shape(y: torch.Tensor, layout: str, lead: int) -> tuple[int, ...]:
    """One sample's shape of a module's output y, (c, h, w) whatever its layout, or (features,).

    `lead` counts the dimensions before the batch in batch-first order (1 with runs)."""
    if y.dim() == lead + 4 and layout == BATCH_INNERMOST:
        return tuple(y.shape[lead:lead + 3])
    return tuple(y.shape[lead + 1:])
