"""What a trained network gets right: classes from outputs, the run's error, and metrics.

The error of a run is the fraction of points misclassified (classification), or the
RMSE in the target's units (regression). Works on one network or an ensemble: outputs
(..., n, out) with a leading run dimension give one error per run.
"""

from __future__ import annotations

from typing import Any

import torch

from core.data import preprocess
from core.data.dataset import CLASSIFICATION
from core.data.metrics import classification_metrics, regression_metrics, sequence_metrics
from core.network.protocols import Loss, Module, decision_threshold, evaluating


def predicted_classes(out: torch.Tensor, loss: Loss, one_hot: bool) -> torch.Tensor:
    """(..., n) class indices: the largest output, or class 1 above the loss's threshold."""
    if one_hot:
        return out.argmax(dim=-1)
    return (out > decision_threshold(loss)).long().squeeze(-1)


# Evaluation runs the data through the network in slices of rows, each at most this many
# input numbers over every run: a whole data set at once gives an image network activations
# of hundreds of MB (30 CNNs on digits' training set: 165 MB for one layer's output), which
# run slower than the same work in slices. Small data (the disk, even 30 runs of it) is one slice.
SLICE_NUMBERS = 2**16


def forward_in_slices(model: Module, x: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """`model.forward(x)` for x (..., n, features), n cut into equal slices when x is large
    (of at most `rows` rows, when given: `slice_rows(task)`).

    For evaluation: each row's output is its own (no batch statistics), so the slices give
    the outputs of the whole.
    """
    parts = row_slices(x, rows)
    if len(parts) == 1:
        return model.forward(x)
    # the rows' dimension counted from the front: a sequence's outputs have one more after it
    return torch.cat([model.forward(part) for part in parts], dim=x.dim() - 2)


# A sequence model's activations per row are its context times its width, many times its
# input's numbers: slices of this many rows keep evaluating pydoc's 13,000 windows near
# 100 MB (1,000-row slices took 1.8 GB).
SEQUENCE_ROWS = 64


def slice_rows(task: str) -> int | None:
    """The rows per evaluation slice a task needs (None: by SLICE_NUMBERS)."""
    return SEQUENCE_ROWS if task == "sequence" else None


def row_slices(x: torch.Tensor, rows: int | None = None) -> tuple[torch.Tensor, ...]:
    """x (..., n, features) cut along n into slices of at most SLICE_NUMBERS input numbers,
    or of at most `rows` rows."""
    n = x.shape[-2]
    if rows is not None:
        slices = -(-n // rows)
    else:
        per_row = max(1, x.numel() // max(n, 1))  # input numbers per row, over every run
        slices = n // max(64, SLICE_NUMBERS // per_row)  # never thinner than 64 rows
    return (x,) if slices <= 1 else torch.tensor_split(x, slices, dim=-2)


def mean_loss(model: Module, loss: Loss, x: torch.Tensor, y: torch.Tensor, rows: int | None = None) -> float:
    """The loss's mean over every row of x (one network, in the current mode), a slice at a
    time: a sequence model's logits over a whole training set would take gigabytes."""
    parts = row_slices(x, rows)
    if len(parts) == 1:
        return loss.forward(model.forward(x), y).item()
    total = sum(loss.forward(model.forward(xs), ys).item() * xs.shape[-2]
                for xs, ys in zip(parts, torch.tensor_split(y, len(parts), dim=x.dim() - 2)))
    return total / x.shape[-2]


def run_errors(
    model: Module, loss: Loss, x: torch.Tensor, labels: torch.Tensor, *, task: str,
    one_hot: bool, preprocessing: dict[str, Any],
) -> torch.Tensor:
    """() or (runs,): the fraction misclassified, or the RMSE in the target's units (in evaluation)."""
    with torch.set_grad_enabled(False), evaluating(model):
        if task == "sequence":  # by slice: logits (n, time, vocab) of a whole set are large
            parts = row_slices(x, SEQUENCE_ROWS)
            wrong = sum(float(output_errors(model.forward(xs), loss, ys, task=task, one_hot=one_hot,
                                            preprocessing=preprocessing)) * xs.shape[-2]
                        for xs, ys in zip(parts, torch.tensor_split(labels, len(parts), dim=0)))
            return torch.tensor(wrong / max(x.shape[-2], 1), dtype=torch.float64)
        return output_errors(forward_in_slices(model, x), loss, labels, task=task, one_hot=one_hot,
                             preprocessing=preprocessing)


def error_rate(
    model: Module, loss: Loss, x: torch.Tensor, labels: torch.Tensor, *, task: str = "binary",
    one_hot: bool | None = None, preprocessing: dict[str, Any] | None = None,
) -> float:
    """One network's error on (x, labels), for any task (in evaluation).

    Classification: the fraction misclassified; `labels` are class indices, (n,) or (n, 1)
    (for "binary", 0/1 of any dtype). `one_hot` (default: for "multiclass") says whether the
    network has one output per class. Regression: the RMSE in the target's units against
    `labels` (n, targets), the outputs mapped back through `preprocessing` when the targets
    were standardised (core.data.preprocess).
    """
    if task in CLASSIFICATION:
        flat = labels.reshape(-1)  # (n,)
        labels = (flat > 0.5).long() if task == "binary" else flat.long()
    one_hot = task == "multiclass" if one_hot is None else one_hot
    return run_errors(model, loss, x, labels, task=task, one_hot=one_hot,
                      preprocessing=preprocessing or {}).item()


def output_errors(
    out: torch.Tensor, loss: Loss, labels: torch.Tensor, *, task: str, one_hot: bool,
    preprocessing: dict[str, Any],
) -> torch.Tensor:
    """`run_errors` from the outputs (..., n, out) already computed."""
    if task in CLASSIFICATION:
        return (predicted_classes(out, loss, one_hot) != labels).double().mean(dim=-1)
    if task == "sequence":  # the likeliest next token is not the next token
        return (out.argmax(dim=-1) != labels).double().mean(dim=(-2, -1))
    diff = preprocess.target_output(preprocessing, out) - labels.double()  # (..., n, t)
    return diff.pow(2).mean(dim=(-2, -1)).sqrt()


def output_metrics(
    out: torch.Tensor, loss: Loss, labels: torch.Tensor, *, task: str, one_hot: bool,
    preprocessing: dict[str, Any], class_names: tuple[str, ...], images: bool = False,
) -> dict[str, Any]:
    """One network's metrics from its outputs (n, out): the per-class table and confusion
    matrix, or RMSE, MAE and R^2, and the PSNR for `images` (core.data.metrics)."""
    if task in CLASSIFICATION:
        return classification_metrics(labels, predicted_classes(out, loss, one_hot), class_names)
    if task == "sequence":
        return sequence_metrics(out, labels)
    return regression_metrics(labels, preprocess.target_output(preprocessing, out), images)
