"""Image datasets: MNIST-format IDX files from a folder, and digits denoising (image to image).

Rows stay flat, as the dataset contract asks (x (n, features)); `input_shape` says how
each row is an image, (1, 28, 28) or (1, 8, 8), and a network that starts with an image
layer gets it as one.
"""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

from core import Dataset, DataError, hookimpl
from core.lazy import torch  # imported on first use: listing plugins stays fast

# The four files of MNIST and Fashion-MNIST, as distributed (each may end in .gz).
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
IDX_UBYTE = 0x08  # the element type byte of an unsigned-byte IDX file


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """An IDX file (raw or gzipped) as a uint8 tensor of the shape its header gives.

    The format: two zero bytes, a type byte (0x08: unsigned bytes), a byte with the number
    of dimensions, one big-endian 4-byte size per dimension, then the data.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read this IDX file: {e}") from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != IDX_UBYTE or not 1 <= data[3] <= 4:
        raise DataError(
            f"{path}: not an unsigned-byte IDX file (its first bytes are {data[:4].hex()}, "
            f"expected 0000 08 0d with d the number of dimensions)"
        )
    rank = data[3]
    header = 4 + 4 * rank
    sizes = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    if len(data) != header + math.prod(sizes):
        raise DataError(
            f"{path}: the header promises {'x'.join(map(str, sizes))} = {math.prod(sizes)} bytes "
            f"of data, the file has {max(len(data) - header, 0)} (truncated?)"
        )
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).view(*sizes)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"dataset 'mnist': {folder} has no {stem} (or {stem}.gz); it needs the four "
                    f"files {', '.join(IDX_FILES.values())}")


def mnist(path: str, fashion: bool = False, limit: int = 0) -> Dataset:
    """MNIST or Fashion-MNIST from the four IDX files in the folder `path` (raw or .gz): 1x28x28 images, 10 classes.

    Pixels are scaled to [0, 1]. The files' own test split is the test set. `fashion=true`
    names the classes as Fashion-MNIST's; `limit=N` keeps the first N training and test images.
    """
    folder = Path(str(path)).expanduser()
    if not folder.is_dir():
        raise DataError(f"dataset 'mnist': path {str(path)!r} is not a folder; give the folder "
                        f"that holds {IDX_FILES['x_train']} and the other three files")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise DataError(f"dataset 'mnist': limit must be an integer >= 0 (0: all), got {limit!r}")
    parts = {key: read_idx(_find(folder, stem)) for key, stem in IDX_FILES.items()}
    for split in ("train", "test"):
        images, labels = parts[f"x_{split}"], parts[f"y_{split}"]
        if images.dim() != 3 or labels.dim() != 1 or len(images) != len(labels):
            raise DataError(
                f"dataset 'mnist': {split} images {tuple(images.shape)} and labels "
                f"{tuple(labels.shape)} do not match; expected (n, rows, columns) and (n,)"
            )
        if len(labels) and int(labels.max()) > 9:
            raise DataError(f"dataset 'mnist': {split} labels go up to {int(labels.max())}; expected 0-9")
    h, w = parts["x_train"].shape[1:]
    if tuple(parts["x_test"].shape[1:]) != (h, w):
        raise DataError(f"dataset 'mnist': train images are {h}x{w}, test images "
                        f"{'x'.join(map(str, parts['x_test'].shape[1:]))}")

    def rows(images):  # (n, h, w) bytes -> (n, h*w) in [0, 1]
        return images[:limit or None].reshape(-1, h * w).to(torch.float64) / 255

    def labels(y):
        return y[:limit or None].long()

    classes = FASHION_CLASSES if fashion else tuple(str(d) for d in range(10))
    return Dataset(
        "fashion_mnist" if fashion else "mnist", "multiclass", rows(parts["x_train"]),
        labels(parts["y_train"]), tuple(f"pixel{i}" for i in range(h * w)), (1, h, w), classes,
        x_test=rows(parts["x_test"]), y_test=labels(parts["y_test"]),
        description=f"{'Fashion-MNIST' if fashion else 'MNIST'} from {folder}",
    )


# The course's denoiser, Sequential(Conv(stride 2), ReLU, Conv(stride 2), ReLU, Upsampling,
# ReLU, Upsampling, Sigmoid), each Upsampling a nearest upsampling and a convolution, on 8x8.
COURSE_DENOISER = (
    "conv2d:out=32,k=3,stride=2,pad=1,relu,conv2d:out=64,k=3,stride=2,pad=1,relu,"
    "upsample:scale=2,conv2d:out=32,k=3,pad=1,relu,upsample:scale=2,conv2d:out=1,k=3,pad=1,sigmoid"
)


def denoise(generator: torch.Generator, noise: float = 0.3) -> Dataset:
    """Digits denoising (image to image): noisy 1x8x8 digits in, the clean digit out; pixels in [0, 1].

    Each image gets Gaussian noise of standard deviation `noise`, drawn from the run's
    seed, clipped to [0, 1]. A regression task with 64 targets; its metrics include the
    PSNR. Needs scikit-learn (`pip install 'nn-scratch[datasets]'`) for the digits.
    """
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (
            math.isfinite(noise) and noise >= 0):
        raise DataError(f"dataset 'denoise': noise must be a finite number >= 0, got {noise!r}")
    try:
        from sklearn.datasets import load_digits  # noqa: PLC0415: heavy, and optional
    except ImportError:
        raise DataError("dataset 'denoise' takes scikit-learn's digits, which is not installed; "
                        "install it with: pip install 'nn-scratch[datasets]'") from None
    clean = torch.as_tensor(load_digits().data, dtype=torch.float64) / 16  # (1797, 64) in [0, 1]
    noisy = (clean + noise * torch.randn(clean.shape, generator=generator, dtype=torch.float64))
    names = tuple(f"pixel{i}" for i in range(64))
    return Dataset("denoise", "regression", noisy.clamp_(0, 1), clean, names, (1, 8, 8),
                   target_names=names, description=f"digits with noise {noise:g} -> clean digits")


@hookimpl
def register_datasets(register):
    register("mnist", mnist)
    # Pixels stay in [0, 1] (no standardising: the sigmoid output matches the clean pixels),
    # MSE, and the course's network with Adam.
    register("denoise", denoise, defaults={"preprocess": "none", "loss": "mse",
                                           "layers": COURSE_DENOISER, "epochs": 30, "lr": 0.003,
                                           "batch_size": 32})
