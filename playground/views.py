"""What the page draws for data sets other than 2-D classes: a curve, a surface, a digit.

A run's *view* follows from its data set alone (`view_kind`):

    plane    2-D points of classes: the decision regions (session.py's heat map)
    curve    regression over one input: the fitted curve over the points
    surface  regression over two inputs: the fitted surface as a heat map of values
    image    small one-channel images of classes (digits, 8x8): the class probabilities
             of an image the user draws (the *probe*)

Every value drawn comes from the painter's copy of the network (`Run.view`), through the
framework's own forward, in the target's units (`preprocess.target_output`) for a
regression. The probe arrives at the data's scale (digits: 0 to 16) and goes through the
run's own input preprocessing, as `nn-cli predict` sends a row.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from core.data import preprocess
from core.data.dataset import CLASSIFICATION, Dataset
from core.errors import NNError

from playground.config import ConfigError

MAX_IMAGE_SIDE = 16  # images the page can draw by hand: one channel, at most 16 x 16


class ProbeError(ConfigError):
    """A drawn image the run cannot take (400)."""


def view_kind(dataset: Dataset) -> str | None:
    """How the page draws a run of `dataset`, or None if the playground cannot."""
    shape, classes = tuple(dataset.input_shape), dataset.task in CLASSIFICATION
    if shape == (2,) and classes:
        return "plane"
    if dataset.task == "regression" and len(dataset.target_names) == 1 and shape in ((1,), (2,)):
        return "curve" if shape == (1,) else "surface"
    if classes and len(shape) == 3 and shape[0] == 1 and max(shape[1:]) <= MAX_IMAGE_SIDE:
        return "image"
    return None


def domain_of(kind: str, x: torch.Tensor) -> list[float]:
    """[x0, x1] of a curve's inputs or [x0, x1, y0, y1] of a surface's, with a margin;
    [] for an image."""
    if kind == "image":
        return []
    low, high = x.double().min(dim=0).values, x.double().max(dim=0).values  # (features,)
    centre, half = (low + high) / 2, (high - low).max().item() / 2 * 1.05 or 1.0
    return [value for c in centre.tolist() for value in (c - half, c + half)]


def grid_of(kind: str, domain: list[float], n: int, preprocessing: dict,
            dtype: torch.dtype) -> torch.Tensor:
    """The inputs a curve or a surface is drawn at, preprocessed: n points along a curve's
    axis (n, 1), n x n cell centres of a surface (row 0 at the top) (n * n, 2)."""
    axes = []
    for low, high in zip(domain[::2], domain[1::2]):
        step = (high - low) / n
        axes.append(torch.arange(n, dtype=torch.float64) * step + low + step / 2)  # (n,)
    if kind == "curve":
        cells = axes[0].view(-1, 1)  # (n, 1)
    else:
        gy, gx = torch.meshgrid(axes[1].flip(0), axes[0], indexing="ij")  # (n, n) each
        cells = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)  # (n * n, 2)
    return preprocess.apply(preprocessing, cells.to(dtype)).to(dtype)


def setup_of(kind: str, raw, dataset: Dataset) -> dict[str, Any]:
    """The points (a curve's x and target, a surface's x, y and target), the targets'
    range, or an image's shape and pixel range: sent once per reset."""
    if kind == "image":
        return {"image": image_of(raw, dataset)}
    targets = torch.cat([raw.y_train, raw.y_test]).double()
    return {"train": _targets(kind, raw.x_train, raw.y_train),
            "test": _targets(kind, raw.x_test, raw.y_test),
            "range": [targets.min().item(), targets.max().item()]}


def image_of(raw, dataset: Dataset) -> dict[str, Any]:
    """An image set's shape and pixel range (its scale: digits' 0 to 16), as drawn."""
    pixels = torch.cat([raw.x_train, raw.x_test])
    return {"shape": list(dataset.input_shape),
            "low": pixels.min().item(), "high": pixels.max().item()}


def _targets(kind: str, x: torch.Tensor, y: torch.Tensor) -> dict[str, list]:
    points = {"x": [round(v, 5) for v in x[:, 0].tolist()],
              "value": [round(v, 5) for v in y[:, 0].tolist()]}
    if kind == "surface":
        points["y"] = [round(v, 5) for v in x[:, 1].tolist()]
    return points


def fitted(run, stopped=None) -> dict[str, Any]:
    """A frame's view part: the fitted curve's or surface's values, in the target's units,
    at the grid (in float32, little endian, base64); an image's probe's probabilities."""
    from playground.session import _b64  # the frame's own encoding

    if run.kind == "image":
        return {"probe": None if run.probe is None else probabilities(run, run.probe)}
    out = run.view_forward(run.grid, stopped)  # (cells, 1)
    values = preprocess.target_output(run.data.preprocessing, out)[:, 0]  # (cells,)
    return {run.kind: _b64(values.float())}


def probabilities(run, pixels: torch.Tensor) -> list[float]:
    """One probability per class of one drawn image (features,) at the data's scale."""
    x = preprocess.apply(run.data.preprocessing, pixels.view(1, -1).to(run.data.x_train.dtype))
    scores = run.view.forward(x.to(run.data.x_train.dtype))  # (1, outputs)
    to_probabilities = getattr(run.view_loss, "probabilities", None)
    if to_probabilities is None:
        raise NNError(f"loss {run.settings.loss!r} gives no class probabilities")
    return [float(p) for p in to_probabilities(scores.double())[0].tolist()]


def parse_probe(body: Any, kind: str, image: dict[str, Any] | None) -> torch.Tensor:
    """A drawn image from a request body {"pixels": [...]}: one number per pixel, at the
    data's scale (within its lowest and highest pixel)."""
    if kind != "image" or image is None:
        raise ProbeError(f"this run's data set has no images to draw (its view is a {kind}); "
                         f"pick digits to draw one")
    count = math.prod(image["shape"])
    if not isinstance(body, dict) or set(body) != {"pixels"}:
        raise ProbeError(f'the body must be {{"pixels": [{count} numbers]}}')
    pixels = body["pixels"]
    if not isinstance(pixels, list) or len(pixels) != count:
        got = len(pixels) if isinstance(pixels, list) else type(pixels).__name__
        raise ProbeError(f"pixels must be a list of {count} numbers "
                         f"({' x '.join(map(str, image['shape']))}), got {got}")
    low, high = image["low"], image["high"]
    for index, value in enumerate(pixels):
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or not low <= value <= high):
            raise ProbeError(f"pixels[{index}] must be a number between {low:g} and {high:g} "
                             f"(the data's scale), got {value!r}")
    return torch.tensor(pixels, dtype=torch.float64)  # (features,)
