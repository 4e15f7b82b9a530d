"""The built-in datasets: the report's disk, the 2-D sets people learn on, scikit-learn's
shipped tables, and files.

Every 2-D set draws from the run's seeded `generator` only, so a seed gives the same points
on every machine; none of them has its own test split except the disk (which draws a fresh
one), so the pipeline splits them (seeded, stratified, `--test-fraction`). The tables need
scikit-learn (`pip install 'nn-scratch[datasets]'`), imported only when one is built.
"""

from __future__ import annotations

import functools
import math

from core import Dataset, DataError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast

EXTRA = "nn-scratch[datasets]"
XY = ("x", "y")


def _binary(name: str, x: torch.Tensor, labels: torch.Tensor, names=("0", "1"), **kw) -> Dataset:
    return Dataset(name, "binary", x, labels, XY, (2,), tuple(names), **kw)


def _shuffled(x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
    order = torch.randperm(len(labels), generator=generator)
    return x[order], labels[order]


def _check_size(name: str, n: int, noise: float, least: int = 2) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < least:
        raise DataError(f"dataset {name!r}: n must be an integer >= {least}, got {n!r}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (
        math.isfinite(noise) and noise >= 0
    ):
        raise DataError(f"dataset {name!r}: noise must be a finite number >= 0, got {noise!r}")


def _halves(n: int) -> tuple[int, int]:
    return n // 2, n - n // 2


def _noisy(x: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    return x + noise * torch.randn(x.shape, generator=generator, dtype=torch.float64)


def disk(
    generator: torch.Generator, n_train: int = 1000, n_test: int = 1000,
    dtype: torch.dtype | None = None,
) -> Dataset:
    """The report's task: points of the unit square, inside the disk of area 1/2 or not.

    Draws its own test set (n_test fresh points) after the training points, from the same
    stream, exactly as before datasets were plugins: results are unchanged bit for bit.
    The labels are computed at the run's precision (`dtype`), as they always were.
    """
    from core.data.disk import disk_dataset, disk_labels  # imports torch: once a disk is drawn

    dtype = dtype or torch.float64
    x_train, y_train = disk_dataset(n_train, generator, dtype)
    x_test, y_test = disk_dataset(n_test, generator, dtype)
    return Dataset(
        "disk", "binary", x_train.double(), y_train.view(-1).long(), XY, (2,),
        ("0", "1"), x_test.double(), y_test.view(-1).long(),
        description="Uniform points of [0, 1]^2; class 1 inside the disk of area 1/2 at (0.5, 0.5).",
        truth=disk_labels,
    )


def moons(generator: torch.Generator, n: int = 1000, noise: float = 0.2) -> Dataset:
    """Two interleaving half circles (scikit-learn's make_moons), Gaussian noise of sd `noise`."""
    _check_size("moons", n, noise)
    n_out, n_in = _halves(n)
    t_out = torch.linspace(0, math.pi, n_out, dtype=torch.float64)
    t_in = torch.linspace(0, math.pi, n_in, dtype=torch.float64)
    x = torch.cat([
        torch.stack([torch.cos(t_out), torch.sin(t_out)], 1),  # (n_out, 2)
        torch.stack([1 - torch.cos(t_in), 0.5 - torch.sin(t_in)], 1),  # (n_in, 2)
    ])
    labels = torch.cat([torch.zeros(n_out), torch.ones(n_in)]).long()
    x, labels = _shuffled(x, labels, generator)
    return _binary("moons", _noisy(x, noise, generator), labels)


def circles(
    generator: torch.Generator, n: int = 1000, noise: float = 0.1, factor: float = 0.5
) -> Dataset:
    """A circle inside a circle `factor` times its radius (scikit-learn's make_circles)."""
    _check_size("circles", n, noise)
    if not (isinstance(factor, (int, float)) and 0 < factor < 1):
        raise DataError(f"dataset 'circles': factor must be in (0, 1), got {factor!r}")
    n_out, n_in = _halves(n)
    t_out = torch.arange(n_out, dtype=torch.float64) * (2 * math.pi / n_out)
    t_in = torch.arange(n_in, dtype=torch.float64) * (2 * math.pi / n_in)
    x = torch.cat([
        torch.stack([torch.cos(t_out), torch.sin(t_out)], 1),  # (n_out, 2)
        factor * torch.stack([torch.cos(t_in), torch.sin(t_in)], 1),  # (n_in, 2)
    ])
    labels = torch.cat([torch.zeros(n_out), torch.ones(n_in)]).long()
    x, labels = _shuffled(x, labels, generator)
    return _binary("circles", _noisy(x, noise, generator), labels, ("outer", "inner"))


def xor(generator: torch.Generator, n: int = 1000, noise: float = 0.1) -> Dataset:
    """Points of [-1, 1]^2, half of them with x * y > 0 (class 1); then Gaussian noise of sd `noise`."""
    _check_size("xor", n, noise)
    n_0, n_1 = _halves(n)
    labels = torch.cat([torch.zeros(n_0), torch.ones(n_1)]).long()
    size = torch.rand(n, 2, generator=generator, dtype=torch.float64)  # (n, 2): |x|, |y|
    sign = torch.randint(0, 2, (n,), generator=generator).double() * 2 - 1  # (n,): x's sign
    same = labels.double() * 2 - 1  # (n,): y's sign times x's, +1 for class 1
    x = size * torch.stack([sign, sign * same], 1)  # (n, 2)
    x, labels = _shuffled(x, labels, generator)
    return _binary("xor", _noisy(x, noise, generator), labels)


def spiral(generator: torch.Generator, n: int = 1000, arms: int = 2, noise: float = 0.2) -> Dataset:
    """`arms` interleaved spiral arms, one class each; `noise` is the sd of the angle (radians)."""
    _check_size("spiral", n, noise)
    if isinstance(arms, bool) or not isinstance(arms, int) or not 2 <= arms <= n:
        raise DataError(f"dataset 'spiral': arms must be an integer in [2, n], got {arms!r}")
    sizes = [n // arms + (1 if j < n % arms else 0) for j in range(arms)]
    points, labels = [], []
    for arm, size in enumerate(sizes):
        radius = torch.linspace(0.05, 1, size, dtype=torch.float64)  # (size,)
        angle = 4 * radius + 2 * math.pi * arm / arms
        angle = angle + noise * torch.randn(size, generator=generator, dtype=torch.float64)
        points.append(torch.stack([radius * torch.sin(angle), radius * torch.cos(angle)], 1))
        labels.append(torch.full((size,), arm, dtype=torch.long))
    x, y = _shuffled(torch.cat(points), torch.cat(labels), generator)
    return Dataset("spiral", "binary" if arms == 2 else "multiclass", x, y, XY, (2,),
                   tuple(f"arm {j}" for j in range(arms)))


def gauss(generator: torch.Generator, n: int = 1000, noise: float = 0.5, distance: float = 2.0) -> Dataset:
    """Two Gaussian blobs of sd `noise`, centred `distance` apart on the diagonal."""
    _check_size("gauss", n, noise)
    n_a, n_b = _halves(n)
    offset = distance / (2 * math.sqrt(2))
    centres = torch.cat([torch.full((n_a, 2), -offset), torch.full((n_b, 2), offset)]).double()
    labels = torch.cat([torch.zeros(n_a), torch.ones(n_b)]).long()
    x, labels = _shuffled(centres, labels, generator)
    return _binary("gauss", _noisy(x, noise, generator), labels)


# -- scikit-learn's shipped tables (no download) ------------------------------------------


def _sklearn_table(name: str, loader: str) -> Dataset:
    try:
        import sklearn.datasets  # noqa: PLC0415, F401: heavy, and optional
    except ImportError:
        raise DataError(
            f"dataset {name!r} comes from scikit-learn, which is not installed; "
            f"install it with: pip install '{EXTRA}'"
        ) from None
    bunch = _sklearn_bunch(loader)
    x = torch.tensor(bunch.data, dtype=torch.float64)  # (n, features), a copy: the bunch is shared
    features = tuple(str(f) for f in bunch.feature_names)
    if name == "diabetes":
        y = torch.tensor(bunch.target, dtype=torch.float64).view(-1, 1)  # (n, 1)
        return Dataset(name, "regression", x, y, features, (len(features),),
                       target_names=("progression",), description=_first_line(bunch.DESCR))
    classes = tuple(str(c) for c in bunch.target_names)
    task = "binary" if len(classes) == 2 else "multiclass"
    shape = (1, 8, 8) if name == "digits" else (len(features),)
    return Dataset(name, task, x, torch.tensor(bunch.target, dtype=torch.long), features,
                   shape, classes, description=_first_line(bunch.DESCR))


@functools.cache
def _sklearn_bunch(loader: str):
    """scikit-learn's table, parsed once per process: a 30-run ensemble or a sweep reads it
    once per run, and parsing digits' CSV costs more than a run's data preparation."""
    import sklearn.datasets  # noqa: PLC0415: heavy, and optional

    return getattr(sklearn.datasets, loader)()


def _first_line(text: str) -> str:
    lines = [line.strip(" .") for line in (text or "").splitlines() if line.strip(" .=*-")]
    return lines[0] if lines else ""


def digits() -> Dataset:
    """scikit-learn's handwritten digits: 1797 8x8 images (1x8x8), 10 classes."""
    return _sklearn_table("digits", "load_digits")


def iris() -> Dataset:
    """scikit-learn's iris: 150 flowers, 4 measurements, 3 species."""
    return _sklearn_table("iris", "load_iris")


def wine() -> Dataset:
    """scikit-learn's wine: 178 wines, 13 chemical measurements, 3 cultivars."""
    return _sklearn_table("wine", "load_wine")


def breast_cancer() -> Dataset:
    """scikit-learn's breast cancer (Wisconsin): 569 tumours, 30 features, malignant or benign."""
    return _sklearn_table("breast_cancer", "load_breast_cancer")


def diabetes() -> Dataset:
    """scikit-learn's diabetes (regression): 442 patients, 10 features, disease progression."""
    return _sklearn_table("diabetes", "load_diabetes")


def file(path: str, target: str | None = None, task: str | None = None, sep: str | None = None,
         skip: int = 0) -> Dataset:
    """A table from a .csv, .tsv, .txt, .json or .npz file (the text ones may be compressed:
    .gz, .bz2, .xz); `--data PATH` is short for file:path=PATH.

    Numeric features; the target is the column `target` names (default: a `label` column,
    else the last). Numeric or string labels become classes (string labels come back as
    the same strings in `nn-cli predict`); a target of real values, or of more than 50
    distinct whole numbers, is a regression target; `task=classification` or
    `task=regression` decides instead. A text table's separator is detected (comma, tab,
    semicolon or blanks) unless `sep` names it (comma, semicolon, tab, space, or one
    character); `skip=N` skips N lines before the header (scikit-learn's CSVs start with
    a line of counts).
    """
    from core import read_data_file  # imports numpy and torch: only once a file is read

    return read_data_file(path, target, task, sep, skip)


# The settings a dataset suggests for the options a user leaves out (hookspecs.py).
DEFAULTS = {
    # A wider, shallower ReLU network and fewer, smaller-batch epochs than the disk's
    # defaults: 1.8% mean test error over seeds 0-4 where the disk's network gets 4.6%
    # (bench/datasets.py).
    "digits": {"act": "relu", "hidden": (256,), "epochs": 40, "lr": 0.002, "batch_size": 32},
    # The disk's network overfits 331 training rows in 150 epochs at lr 0.04 (R^2 below 0
    # on some seeds); 50 epochs at lr 0.01 stop in time (bench/datasets.py).
    "diabetes": {"epochs": 50, "lr": 0.01},
}


@hookimpl
def register_datasets(register):
    for factory in (disk, moons, circles, xor, spiral, gauss,
                    digits, iris, wine, breast_cancer, diabetes, file):
        register(factory.__name__, factory, defaults=DEFAULTS.get(factory.__name__))
