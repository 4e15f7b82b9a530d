"""The figures show what the JSON says, and are written as PNGs that open."""

import json
import math

import matplotlib.image
import pytest
import torch

from core import TrainSettings
from core.pipeline.compare import compare
from core.data.disk import CENTER, RADIUS
from core.pipeline.figures import GRID, loss_figure, points_figure, write_figures

SMALL = TrainSettings(hidden=(6,), epochs=4, n_train=200, n_test=150)


@pytest.fixture(scope="module")
def comparison(registry):
    return compare(SMALL, {"act": ["tanh", "relu"]}, 2, registry)


@pytest.fixture(scope="module")
def curves(comparison):
    return list(zip(comparison.labels, comparison.results))


def test_loss_lines_are_the_json_means_on_a_log_axis(comparison, curves):
    data = json.loads(json.dumps(comparison.to_dict()))  # what --json prints
    fig = loss_figure(curves, "title")
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "epoch" and "loss" in ax.get_ylabel()
    assert ax.get_title() == "title"
    lines = ax.get_lines()
    assert len(lines) == 2
    for line, config in zip(lines, data["configurations"]):
        assert list(line.get_xdata()) == [1, 2, 3, 4]
        assert list(line.get_ydata()) == config["loss_mean"]
        assert line.get_label().startswith(config["label"])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["--act tanh (mean of 2 runs)", "--act relu (mean of 2 runs)"]


def test_loss_band_spans_one_std_in_log_space(comparison, curves):
    fig = loss_figure(curves)
    band = fig.axes[0].collections[0]  # the first configuration's fill_between
    ys = band.get_paths()[0].vertices[:, 1]
    mean, sd = comparison.results[0].loss_mean, comparison.results[0].loss_std
    upper = [m * math.exp(s / m) for m, s in zip(mean, sd)]  # log(mean) + std / mean
    lower = [m * math.exp(-s / m) for m, s in zip(mean, sd)]
    assert max(ys) == pytest.approx(max(upper), rel=1e-12)
    assert min(ys) == pytest.approx(min(lower), rel=1e-12)


def test_points_show_each_runs_mistakes_circle_and_boundary(comparison, curves, registry):
    fig = points_figure(curves, registry, runs_shown=2)
    axes = fig.axes
    assert len(axes) == 4  # 2 configurations x 2 runs
    for ax, result in zip(axes, [r for m in comparison.results for r in m.results]):
        correct, wrong = ax.collections[0], ax.collections[1]
        n_wrong = round(result.test_error * SMALL.n_test)
        assert len(wrong.get_offsets()) == n_wrong
        assert len(correct.get_offsets()) == SMALL.n_test - n_wrong
        assert len(ax.collections) == 4  # correct, wrong, the true boundary, the network's
        truth = ax.collections[2].get_paths()[0].vertices  # the disk's own rule: its circle
        distance = ((truth - torch.tensor(CENTER).numpy()) ** 2).sum(axis=1) ** 0.5
        assert abs(distance - RADIUS).max() < 2 / GRID
        assert f"seed {result.settings.seed}" in ax.get_title()
        assert ax.get_xlabel() == "x1" and ax.get_ylabel() == "x2"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "true boundary (the data's own rule)" in legend and "network's decision boundary" in legend
    assert "Test points" in fig._suptitle.get_text()


def test_write_figures_saves_pngs_that_open(curves, registry, tmp_path):
    paths = write_figures(tmp_path / "new" / "folder", curves, registry)
    assert [p.name for p in paths] == ["loss.png", "test_points.png", "confusion.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 200 and image.shape[1] > 200


def test_the_std_band_is_drawn_in_log_space_and_never_stretches_the_axis():
    """Where mean - std nears 0 the band used to plunge to 1e-3 of the mean, stretching the
    log axis by decades: in log space it is mean / e^(std/mean) .. mean * e^(std/mean)."""
    from types import SimpleNamespace

    from core.pipeline.multirun import MultiRunResult

    runs = [SimpleNamespace(losses=[1.0, 0.5, 0.2]), SimpleNamespace(losses=[0.001, 0.5, 0.2])]
    result = MultiRunResult(SMALL, runs)
    assert result.loss_mean[0] - result.loss_std[0] < 0  # the case that broke the old band
    fig = loss_figure([("two runs", result)], "title")
    (ax,) = fig.axes
    fig.canvas.draw()
    low, high = ax.get_ylim()
    assert low > min(result.loss_mean) / 10, (low, result.loss_mean)
    (band,) = ax.collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() > 0 and ys.max() < 10 * max(result.loss_mean)


def test_a_long_title_fits_inside_the_figure(curves):
    from core.pipeline.compare import describe

    settings = TrainSettings(layers="linear:out=25,tanh,linear:out=25,tanh,linear:out=25,tanh,"
                                    "linear:out=1:init=he", optimizer="sgd",
                             optimizer_args={"momentum": 0.9, "nesterov": True})
    fig = loss_figure(curves, "Training loss, mean over runs ± 1 std\n" + describe([settings]))
    fig.canvas.draw()
    (ax,) = fig.axes
    box = ax.title.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1, (box, fig.bbox)
