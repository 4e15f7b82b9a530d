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

from core.data import preprocess
from core.files.atomic import atomic_write_bytes
from core.data.disk import CENTER, RADIUS
from core.pipeline.experiment import TrainResult, datasets
from core.pipeline.multirun import MultiRunResult
from core.network.protocols import decision_threshold
from core.plugin.registry import Registry

GRID = 200  # points per side of the grid on which the decision boundary is traced


def _figure(**kwargs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def describe(configurations) -> str:
    """The settings all `configurations` share, for a figure's title; what varies between
    them (and so stands in each label) shows as "varies"."""
    first = configurations[0]

    def shared(field: str, text: str) -> str:
        same = all(getattr(c, field) == getattr(first, field) for c in configurations)
        return text if same else f"{field} varies"

    net = first.layers if first.layers else "-".join(map(str, (2, *first.hidden, 1))) + " net"
    o = first.optimizer + "".join(f" {k}={v}" for k, v in first.optimizer_args)
    return (  # two lines, so the title fits the figure
        f"{shared('layers', shared('hidden', net))}, {shared('init', first.init + ' init')}, "
        f"{shared('optimizer', shared('optimizer_args', o))}, "
        f"{shared('lr', f'lr {first.lr:g}')} ({shared('schedule', first.schedule)})\n"
        f"{shared('batch_size', f'batch {first.batch_size}')}, "
        f"{shared('epochs', f'{first.epochs} epochs')}, "
        f"inputs: {shared('preprocess', first.preprocess)}, {shared('dtype', first.dtype)}"
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
    return (_outputs(result, x)[:, 0] > threshold).cpu()


def _outputs(result: TrainResult, x: torch.Tensor) -> torch.Tensor:
    """The trained network's outputs (n, 1) for raw inputs `x` (n, 2), on the CPU."""
    weight = result.model.parameters()[0].value  # the network's dtype and device
    x = preprocess.apply(result.preprocessing, x.to(weight.device, weight.dtype))
    with torch.set_grad_enabled(False):
        return result.model.forward(x).cpu()  # (n, 1)


def _boundary_grid(result: TrainResult, registry: Registry):
    """Network output minus its threshold on a GRID x GRID lattice of the unit square."""
    threshold = decision_threshold(registry.create("loss", result.settings.loss))
    axis = torch.linspace(0, 1, GRID, dtype=torch.float64)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")  # (GRID, GRID) each
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)  # (GRID^2, 2)
    out = _outputs(result, points)  # (GRID^2, 1)
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
    fig.suptitle("Test points of the first runs\n" + describe([r.settings for _, r in rows]), fontsize=9)
    return fig


def write_figures(
    directory: Path, curves: Sequence[tuple[str, MultiRunResult]], registry: Registry,
    runs_shown: int = 3,
) -> list[Path]:
    """Save `loss.png` and `test_points.png` in `directory` (created if missing)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shared = describe([r.settings for _, r in curves])
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
