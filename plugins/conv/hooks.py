"""The plugin's hook: conv2d and conv_transpose2d by name."""

from __future__ import annotations

from core import hookimpl
from plugins.conv.layers import Conv2d, ConvTranspose2d


@hookimpl
def register_layers(register):
    register("conv2d", Conv2d)
    register("conv_transpose2d", ConvTranspose2d)
