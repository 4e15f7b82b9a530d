"""Every figure `--plot` writes keeps its text on the canvas and apart: no title, label or
legend cut off at an edge or drawn over another, for one run, many runs and comparisons,
on every kind of data. Checked on the drawn figure with matplotlib's own extents."""

import warnings

import pytest
from matplotlib.text import Text

from core import TrainSettings
from core.pipeline.compare import compare
from core.pipeline.figures import (
    confusion_figure, loss_figure, misclassified_figure, points_figure, regression_figure,
)
from core.pipeline.multirun import run_many
from core.pipeline.resolve import resolve

SMALL = TrainSettings(hidden=(6,), epochs=2, n_train=120, n_test=90)
SLACK = 0.5  # pixels: rounding of extents


def shown_texts(fig, renderer) -> list[Text]:
    """The text artists the figure draws: titles, axis and tick labels, legends, notes."""
    texts = list(fig.texts)  # the suptitle among them
    for legend in fig.legends:
        texts += [legend.get_title(), *legend.get_texts()]
    for ax in fig.axes:
        if not ax.axison:
            continue
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        for axis in (ax.xaxis, ax.yaxis):  # the ticks drawn: those inside the view limits
            texts += [label for tick in axis._update_ticks() for label in (tick.label1, tick.label2)]
        texts += ax.texts
        if ax.get_legend() is not None:
            texts += [ax.get_legend().get_title(), *ax.get_legend().get_texts()]
    return [t for t in dict.fromkeys(texts) if t.get_visible() and t.get_text().strip()]


def layout_problems(fig) -> list[str]:
    """Each text that leaves the canvas, and each pair of texts (or a legend's box and a
    text outside it) that overlap."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. constrained layout giving up
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    problems = []
    tight = fig.get_tightbbox(renderer)  # inches
    width, height = fig.get_size_inches()
    if tight.x0 < -0.01 or tight.y0 < -0.01 or tight.x1 > width + 0.01 or tight.y1 > height + 0.01:
        problems.append(f"tight bounding box {tight.bounds} leaves the {width}x{height} inch canvas")
    texts = shown_texts(fig, renderer)
    boxes = [(t, t.get_window_extent(renderer)) for t in texts]
    for t, box in boxes:
        if (box.x0 < canvas.x0 - SLACK or box.y0 < canvas.y0 - SLACK
                or box.x1 > canvas.x1 + SLACK or box.y1 > canvas.y1 + SLACK):
            problems.append(f"{t.get_text()!r} at {box.bounds} leaves the canvas {canvas.bounds}")
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            if _overlap(box_a, box_b):
                problems.append(f"{a.get_text()!r} overlaps {b.get_text()!r}")
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    for legend in legends:
        frame = legend.get_window_extent(renderer)
        own = {id(t) for t in [legend.get_title(), *legend.get_texts()]}
        for t, box in boxes:
            if id(t) not in own and _overlap(frame, box):
                problems.append(f"the legend covers {t.get_text()!r}")
    return problems


def _overlap(a, b) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > SLACK) and (min(a.y1, b.y1) - max(a.y0, b.y0) > SLACK)


@pytest.fixture(scope="module")
def disk(registry):
    """One run, 30 runs, and a comparison of two configurations of three runs."""
    one = compare(SMALL, {"act": ["tanh"]}, 1, registry)
    many = compare(SMALL, {"act": ["tanh"]}, 30, registry)
    two = compare(SMALL, {"act": ["tanh", "relu"], "loss": ["bce"]}, 3, registry)
    return {name: list(zip(c.labels, c.results)) for name, c in
            [("one run", one), ("30 runs", many), ("two configurations", two)]}


def of_data(registry, data: str, runs: int = 1):
    settings = resolve(TrainSettings(data=data, hidden=(6,), epochs=2, seed=0), registry,
                       {"hidden", "epochs"})
    return [(f"data={data}", run_many(settings, runs, registry))]


@pytest.mark.parametrize("case", ["one run", "30 runs", "two configurations"])
def test_the_disk_figures_keep_their_text_on_the_canvas(disk, registry, case):
    curves = disk[case]
    for fig in (loss_figure(curves, "Training loss\n" + "x " * 40), points_figure(curves, registry),
                confusion_figure(curves)):
        assert layout_problems(fig) == []


def test_the_figures_of_other_data_keep_their_text_on_the_canvas(registry):
    spiral = of_data(registry, "spiral:arms=3", runs=2)
    assert layout_problems(points_figure(spiral, registry)) == []
    assert layout_problems(confusion_figure(spiral)) == []
    digits = of_data(registry, "digits")
    assert layout_problems(confusion_figure(digits)) == []
    assert layout_problems(misclassified_figure(digits, registry)) == []
    assert layout_problems(regression_figure(of_data(registry, "diabetes"), registry)) == []


def test_a_cut_or_covered_text_is_found(disk, registry):
    """The check itself: a text past the edge, and one drawn over a title, are named."""
    fig = points_figure(disk["one run"], registry)
    fig.text(0.9, 0.5, "past the right edge")
    assert any("'past the right edge'" in p and "leaves the canvas" in p for p in layout_problems(fig))
    fig = points_figure(disk["one run"], registry)
    fig.canvas.draw()
    title = fig.axes[0].title
    fig.text(*fig.transFigure.inverted().transform(title.get_window_extent().p0), "on the title")
    assert any("'on the title'" in p and "overlaps" in p for p in layout_problems(fig))
