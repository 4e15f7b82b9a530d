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
from collections.abc import Sequence
from pathlib import Path

import torch

from core import preprocess
from core.atomic import atomic_write_bytes
from core.data import CENTER, RADIUS
from core.experiment import TrainResult, datasets
from core.multirun import MultiRunResult
from core.protocols import decision_threshold
from core.registry import Registry

GRID = 200  # points per side of the grid on which the decision boundary is traced


def _figure(**kwargs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def describe(settings) -> str:
    """The settings every configuration shares, for a figure's title."""
    o = settings.optimizer + "".join(f" {k}={v}" for k, v in settings.optimizer_args)
    return (  # two lines, so the title fits the figure
        f"{'-'.join(map(str, (2, *settings.hidden, 1)))} net, {settings.init} init, {o}, "
        f"lr {settings.lr:g} ({settings.schedule})\nbatch {settings.batch_size}, "
        f"{settings.epochs} epochs, inputs: {settings.preprocess}, {settings.dtype}"
    )


def loss_figure(curves: Sequence[tuple[str, MultiRunResult]], title: str | None = None):
    """Mean training loss per epoch over the runs, ± one sample std, one line per label."""
    fig = _figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for name, result in curves:
        epochs = list(range(1, len(result.loss_mean) + 1))
        mean, std = result.loss_mean, result.loss_std
        (line,) = ax.plot(epochs, mean, label=f"{name} (mean of {len(result.results)} runs)")
        low = [max(m - s, m * 1e-3) for m, s in zip(mean, std)]  # the log axis needs > 0
        ax.fill_between(epochs, low, [m + s for m, s in zip(mean, std)],
                        color=line.get_color(), alpha=0.2, linewidth=0)
    from matplotlib.ticker import MaxNLocator

    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss (log scale)")
    ax.set_title(title or "Training loss, mean over runs ± 1 std", fontsize=10)
    ax.legend(title="shaded: ± 1 sample std", fontsize=8, title_fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def classify(result: TrainResult, x: torch.Tensor, registry: Registry) -> torch.Tensor:
    """The trained network's class (bool, (n,)) for raw inputs `x` (n, 2)."""
    threshold = decision_threshold(registry.create("loss", result.settings.loss))
    with torch.set_grad_enabled(False):
        out = result.model.forward(preprocess.apply(result.preprocessing, x))  # (n, 1)
    return out[:, 0] > threshold


def _boundary_grid(result: TrainResult, registry: Registry):
    """Network output minus its threshold on a GRID x GRID lattice of the unit square."""
    threshold = decision_threshold(registry.create("loss", result.settings.loss))
    axis = torch.linspace(0, 1, GRID, dtype=torch.float64)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")  # (GRID, GRID) each
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)  # (GRID^2, 2)
    points = points.to(result.model.parameters()[0].value.dtype)
    with torch.set_grad_enabled(False):
        out = result.model.forward(preprocess.apply(result.preprocessing, points))  # (GRID^2, 1)
    return xx.numpy(), yy.numpy(), (out[:, 0].double() - threshold).reshape(GRID, GRID).numpy()


def points_figure(
    rows: Sequence[tuple[str, MultiRunResult]], registry: Registry, runs_shown: int = 3
):
    """For each labelled configuration (a row), the test points of its first runs."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle

    columns = min(runs_shown, max(len(r.results) for _, r in rows))
    fig = _figure(figsize=(3.2 * columns, 3.4 * len(rows) + 0.8), layout="constrained")
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for (name, multirun), row in zip(rows, axes):
        for result, ax in zip(multirun.results, row):
            _, _, x_test, y_test = datasets(result.settings)
            wrong = classify(result, x_test, registry) != (y_test[:, 0] > 0.5)  # (n,)
            ok, bad = x_test[~wrong].numpy(), x_test[wrong].numpy()
            ax.scatter(ok[:, 0], ok[:, 1], s=4, c="tab:blue", alpha=0.5)
            ax.scatter(bad[:, 0], bad[:, 1], s=18, c="tab:red", marker="x")
            ax.add_patch(Circle(CENTER, RADIUS, fill=False, color="black", linewidth=1.2))
            ax.contour(*_boundary_grid(result, registry), levels=[0.0], colors="tab:orange",
                       linewidths=1.2, linestyles="--")
            ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xlabel="x1", ylabel="x2")
            ax.set_title(f"{name}\nseed {result.settings.seed}: "
                         f"{int(wrong.sum())} wrong ({result.test_error:.1%})", fontsize=8)
        for ax in row[len(multirun.results):]:
            ax.set_axis_off()
    handles = [
        Line2D([], [], marker="o", linestyle="", color="tab:blue", label="test point, correct"),
        Line2D([], [], marker="x", linestyle="", color="tab:red", label="test point, misclassified"),
        Line2D([], [], color="black", label="true circle (area 1/2)"),
        Line2D([], [], color="tab:orange", linestyle="--", label="network's decision boundary"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    fig.suptitle("Test points of the first runs\n" + describe(rows[0][1].settings), fontsize=9)
    return fig


def write_figures(
    directory: Path, curves: Sequence[tuple[str, MultiRunResult]], registry: Registry,
    runs_shown: int = 3,
) -> list[Path]:
    """Save `loss.png` and `test_points.png` in `directory` (created if missing)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shared = describe(curves[0][1].settings)
    figures = {
        "loss.png": loss_figure(curves, f"Training loss, mean over runs ± 1 std\n{shared}"),
        "test_points.png": points_figure(curves, registry, runs_shown),
    }
    paths = []
    for name, fig in figures.items():
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=110 if name == "loss.png" else 80)
        paths.append(atomic_write_bytes(directory / name, png.getvalue()))  # never half a PNG
    return paths
