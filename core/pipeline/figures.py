"""The report's two figures, drawn with matplotlib's headless Agg backend.

- `loss_figure`: mean training loss over runs (log scale) against the epoch, with a band
  of one sample standard deviation, one line per configuration.
- `points_figure`: the test points of a few runs, correct and misclassified, with the true
  circle and the trained network's decision boundary.

Each function returns the `matplotlib.figure.Figure` (for tests and notebooks);
`write_figures` saves them as PNGs. Built without pyplot, so no display is ever touched.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from core.data import preprocess
from core.files.atomic import atomic_write_bytes
from core.training.settings import DTYPES
from core.pipeline.compare import describe
from core.pipeline.prepare import datasets, raw_split
from core.pipeline.multirun import MultiRunResult
from core.network.protocols import decision_threshold, evaluating
from core.plugin.registry import Registry
from core.training.components import make_loss
from core.training.result import TrainResult

GRID = 200  # points per side of the grid on which the decision boundary is traced
PANEL = 3.2  # inches: the side of one square panel of points
LEGEND_WIDTH = 6.0  # inches: the test points' two-column legend at font size 8
TITLE_LINE = 0.2  # inches: one line of a title at font size 9


def _figure(**kwargs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def loss_figure(curves: Sequence[tuple[str, MultiRunResult]], title: str | None = None):
    """Mean training loss per epoch over the runs, ± one sample std, one line per label."""
    fig = _figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for name, result in curves:
        epochs = list(range(1, len(result.loss_mean) + 1))
        mean, std = result.loss_mean, result.loss_std
        (line,) = ax.plot(epochs, mean, label=f"{name} (mean of {len(result.results)} run{'s' if len(result.results) != 1 else ''})")
        # NOTE: on a log axis, mean ± std plunges towards 0 (decades down) where std nears
        # the mean; in log space the band is log(mean) ± std/mean (the std of log(loss) to
        # first order), which stays > 0 and is mean ± std where std is small.
        spread = [math.exp(s / m) for m, s in zip(mean, std)]
        ax.fill_between(epochs, [m / f for m, f in zip(mean, spread)],
                        [m * f for m, f in zip(mean, spread)],
                        color=line.get_color(), alpha=0.2, linewidth=0)
    from matplotlib.ticker import MaxNLocator

    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss (log scale)")
    ax.set_title(title or "Training loss, mean over runs ± 1 std", fontsize=10)
    ax.legend(title="shaded: ± 1 sample std (in log space)", fontsize=8, title_fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def classify(result: TrainResult, x: torch.Tensor, registry: Registry) -> torch.Tensor:
    """The trained network's class for raw inputs `x` (n, features): bool (n,) for a
    one-output network (class 1 above the loss's threshold), else class indices (n,)."""
    out = _outputs(result, x)
    if (result.dataset or {}).get("one_hot"):
        return out.argmax(dim=-1)
    threshold = decision_threshold(make_loss(registry, result.settings))
    return (out[:, 0] > threshold).cpu()


def _labels(y: torch.Tensor) -> torch.Tensor:
    """Class indices (n,) from `datasets`' labels: (n, 1) 0/1 or (n,) indices."""
    return (y.view(-1) > 0.5).long() if y.dim() == 2 else y.long()


def _outputs(result: TrainResult, x: torch.Tensor) -> torch.Tensor:
    """The trained network's outputs (n, 1) for raw inputs `x` (n, 2), on the CPU."""
    weight = result.model.parameters()[0].value  # the network's dtype and device
    x = preprocess.apply(result.preprocessing, x.to(weight.device, weight.dtype))
    with torch.set_grad_enabled(False), evaluating(result.model):
        return result.model.forward(x).cpu()  # (n, 1)


def _described(rows: Sequence[tuple[str, MultiRunResult]]) -> str:
    """`describe` of the rows' settings, with the networks' widths when the data are one."""
    results = [r.results[0] for _, r in rows]
    data = [r.dataset for r in results]
    widths = None
    if data[0] and all(d == data[0] for d in data):
        d = data[0]
        outputs = (len(d["target_names"]) if d["task"] == "regression"
                   else len(d["class_names"]) if d.get("one_hot") else 1)
        widths = (math.prod(d["input_shape"]), outputs)
    return describe([r.settings for _, r in rows], widths=widths)


def _lattice(box: tuple[float, float, float, float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """xx, yy (GRID, GRID) and the points (GRID^2, 2) of a GRID x GRID lattice of `box`."""
    x0, x1, y0, y1 = box
    yy, xx = torch.meshgrid(torch.linspace(y0, y1, GRID, dtype=torch.float64),
                            torch.linspace(x0, x1, GRID, dtype=torch.float64), indexing="ij")
    return xx, yy, torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def _boundary_grid(result: TrainResult, registry: Registry, box):
    """Network output minus its threshold on the lattice of `box`."""
    threshold = decision_threshold(make_loss(registry, result.settings))
    xx, yy, points = _lattice(box)
    out = _outputs(result, points)  # (GRID^2, 1)
    return xx.numpy(), yy.numpy(), (out[:, 0].double() - threshold).reshape(GRID, GRID).numpy()


def _truth_grid(truth, box):
    """The data's own rule (0/1) on the lattice of `box`."""
    xx, yy, points = _lattice(box)
    return xx.numpy(), yy.numpy(), truth(points).double().reshape(GRID, GRID).numpy()


def _box(x: torch.Tensor) -> tuple[float, float, float, float]:
    """The points' bounding box, widened to tenths ([0, 1]^2 for the disk's points)."""
    low, high = (x.min(dim=0).values * 10).floor() / 10, (x.max(dim=0).values * 10).ceil() / 10
    return float(low[0]), float(high[0]), float(low[1]), float(high[1])


def points_figure(
    rows: Sequence[tuple[str, MultiRunResult]], registry: Registry, runs_shown: int = 3
):
    """For each labelled configuration (a row), the test points of its first runs."""
    from matplotlib.lines import Line2D

    columns = min(runs_shown, max(len(r.results) for _, r in rows))
    title = "Test points of the first runs\n" + _described(rows)
    # NOTE: constrained layout only moves things within the canvas: the canvas must hold
    # the title's lines, each row of panels (square, with a two-line title and x label)
    # and the two-row legend, and be as wide as the legend, or texts collide or fall off.
    fig = _figure(figsize=(max(PANEL * columns, LEGEND_WIDTH),
                           (PANEL + 0.2) * len(rows) + TITLE_LINE * (title.count("\n") + 1) + 0.8),
                  layout="constrained")
    axes = fig.subplots(len(rows), columns, squeeze=False)
    ruled = True  # every row's data have a rule of their own: its line, not shaded regions
    for (name, multirun), row in zip(rows, axes):
        for result, ax in zip(multirun.results, row):
            split = raw_split(result.settings, registry)
            x_test, labels = split.x_test.to(DTYPES[result.settings.dtype]), split.y_test.long()
            truth = split.dataset.truth
            if truth is None:
                ruled = False
                _regions(ax, result, x_test, labels, registry, name)
                continue
            box = _box(torch.cat([split.x_train, split.x_test]))
            wrong = classify(result, x_test, registry).long() != labels  # (n,)
            ok, bad = x_test[~wrong].numpy(), x_test[wrong].numpy()
            ax.scatter(ok[:, 0], ok[:, 1], s=4, c="tab:blue", alpha=0.5)
            ax.scatter(bad[:, 0], bad[:, 1], s=18, c="tab:red", marker="x")
            ax.contour(*_truth_grid(truth, box), levels=[0.5], colors="black", linewidths=1.2)
            ax.contour(*_boundary_grid(result, registry, box), levels=[0.0], colors="tab:orange",
                       linewidths=1.2, linestyles="--")
            ax.set(xlim=box[:2], ylim=box[2:], aspect="equal", xlabel="x1", ylabel="x2")
            ax.set_title(f"{name}\nseed {result.settings.seed}: "
                         f"{int(wrong.sum())} wrong ({result.test_error:.1%})", fontsize=8)
        for ax in row[len(multirun.results):]:
            ax.set_axis_off()
    handles = [
        Line2D([], [], marker="o", linestyle="", color="tab:blue", label="test point, correct"),
        Line2D([], [], marker="x", linestyle="", color="tab:red", label="test point, misclassified"),
        Line2D([], [], color="black", label="true boundary (the data's own rule)"),
        Line2D([], [], color="tab:orange", linestyle="--", label="network's decision boundary"),
    ]
    if not ruled:  # regions, not the true boundary and a line
        handles = handles[:2] + [Line2D([], [], color="tab:gray", linewidth=6, alpha=0.3,
                                        label="shaded: the predicted class")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def _regions(ax, result: TrainResult, x: torch.Tensor, labels: torch.Tensor, registry, name) -> None:
    """2-D data of any number of classes: the predicted class over the plane, shaded, the
    test points coloured by their true class, and the misclassified ones crossed."""
    low, high = x.min(dim=0).values - 0.3, x.max(dim=0).values + 0.3  # (2,) each
    xs = torch.linspace(float(low[0]), float(high[0]), GRID, dtype=torch.float64)
    ys = torch.linspace(float(low[1]), float(high[1]), GRID, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # (GRID, GRID)
    grid = classify(result, torch.stack([xx.reshape(-1), yy.reshape(-1)], 1), registry)
    k = max(2, len((result.dataset or {}).get("class_names") or []))
    ax.contourf(xx.numpy(), yy.numpy(), grid.long().reshape(GRID, GRID).numpy(),
                levels=[c - 0.5 for c in range(k + 1)], cmap="tab10", vmin=0, vmax=9, alpha=0.25)
    wrong = classify(result, x, registry).long() != labels  # (n,)
    ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=5, c=labels.numpy(), cmap="tab10", vmin=0, vmax=9)
    bad = x[wrong].numpy()
    ax.scatter(bad[:, 0], bad[:, 1], s=18, c="tab:red", marker="x")
    ax.set(xlabel=(result.dataset or {}).get("feature_names", ["x1", "x2"])[0],
           ylabel=(result.dataset or {}).get("feature_names", ["x1", "x2"])[1])
    ax.set_title(f"{name}\nseed {result.settings.seed}: {int(wrong.sum())} wrong "
                 f"({result.test_error:.1%})", fontsize=8)


def confusion_figure(rows: Sequence[tuple[str, MultiRunResult]]):
    """The test confusion matrix of each configuration's first run."""
    fig = _figure(figsize=(4.2 * len(rows), 4.2), layout="constrained")
    axes = fig.subplots(1, len(rows), squeeze=False)[0]
    for (name, multirun), ax in zip(rows, axes):
        result = multirun.results[0]
        matrix = result.metrics["confusion_matrix"]
        names = result.metrics and [c["class"] for c in result.metrics["classes"]]
        ax.imshow(matrix, cmap="Blues")
        high = max(max(row) for row in matrix) / 2  # counts on dark cells are written in white
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                        color="white" if v > high else "black")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set(xlabel="predicted", ylabel="true")
        ax.set_title(f"{name}\nseed {result.settings.seed}: test error {result.test_error:.1%}", fontsize=8)
    return fig


def regression_figure(rows: Sequence[tuple[str, MultiRunResult]], registry: Registry):
    """Predicted against true test targets of each configuration's first run."""
    fig = _figure(figsize=(4.2 * len(rows), 4.2), layout="constrained")
    axes = fig.subplots(1, len(rows), squeeze=False)[0]
    for (name, multirun), ax in zip(rows, axes):
        result = multirun.results[0]
        _, _, x_test, y_test = datasets(result.settings, registry)
        predicted = preprocess.target_output(result.preprocessing, _outputs(result, x_test))
        true = y_test.double()
        ax.scatter(true[:, 0].numpy(), predicted[:, 0].numpy(), s=8, alpha=0.6)
        both = torch.cat([true[:, 0], predicted[:, 0]])
        ax.plot([float(both.min()), float(both.max())], [float(both.min()), float(both.max())],
                color="black", linewidth=1)
        ax.set(xlabel="true", ylabel="predicted")
        ax.set_title(f"{name}\nseed {result.settings.seed}: R^2 {result.metrics['r2']:.3f}", fontsize=8)
    return fig


def misclassified_figure(rows: Sequence[tuple[str, MultiRunResult]], registry: Registry, most: int = 24):
    """Images (input_shape (channels, h, w)): the first misclassified test images of each
    configuration's first run, with their true and predicted classes."""
    result = rows[0][1].results[0]
    shape = result.dataset["input_shape"]
    names = result.dataset["class_names"]
    _, _, x_test, y_test = datasets(result.settings, registry)
    labels = _labels(y_test)
    predicted = classify(result, x_test, registry).long()
    wrong = (predicted != labels).nonzero().view(-1)[:most].tolist()
    columns = 8
    fig = _figure(figsize=(columns * 1.1, (max(1, len(wrong)) // columns + 1) * 1.3), layout="constrained")
    axes = fig.subplots(max(1, -(-len(wrong) // columns)), columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, wrong):
        image = x_test[i].view(*shape)[0].numpy()  # the first channel
        ax.imshow(image, cmap="gray_r")
        ax.set_title(f"{names[labels[i]]} -> {names[predicted[i]]}", fontsize=7)
    fig.suptitle(f"{rows[0][0]}, seed {result.settings.seed}: {len(wrong)} misclassified test "
                 f"images shown (true -> predicted)", fontsize=8)
    return fig


def write_figures(
    directory: Path, curves: Sequence[tuple[str, MultiRunResult]], registry: Registry,
    runs_shown: int = 3,
) -> list[Path]:
    """Save `loss.png` and what the data call for in `directory` (created if missing):
    `test_points.png` (2-D data), `misclassified.png` (images), `confusion.png` (every
    classification), `predicted.png` (regression)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shared = _described(curves)
    figures = {"loss.png": loss_figure(curves, f"Training loss, mean over runs ± 1 std\n{shared}")}
    first = curves[0][1].results[0]
    dataset = first.dataset or {"task": "binary", "input_shape": [2]}
    if any(r.test_error is None for _, m in curves for r in m.results):
        pass  # no rows held out (--test-fraction 0): the loss is all there is to draw
    elif dataset["task"] == "regression":
        figures["predicted.png"] = regression_figure(curves, registry)
    else:
        if list(dataset["input_shape"]) == [2]:
            figures["test_points.png"] = points_figure(curves, registry, runs_shown)
        if len(dataset["input_shape"]) == 3:
            figures["misclassified.png"] = misclassified_figure(curves, registry)
        if all(r.results[0].metrics for _, r in curves):
            figures["confusion.png"] = confusion_figure(curves)
    paths = []
    for name, fig in figures.items():
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=110 if name == "loss.png" else 80)
        paths.append(atomic_write_bytes(directory / name, png.getvalue()))  # never half a PNG
    return paths
