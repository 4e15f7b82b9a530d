"""The convolution plugin: conv2d and conv_transpose2d (layers), one module per algorithm
(im2col, winograd), all in the batch-innermost image layout (core/network/layout.py)."""

from plugins.conv.hooks import register_layers
from plugins.conv.layers import Conv2d, ConvTranspose2d

__all__ = ["Conv2d", "ConvTranspose2d", "register_layers"]
