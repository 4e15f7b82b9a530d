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
from core.data.metrics import classification_metrics, regression_metrics
from core.network.protocols import Loss, Module, decision_threshold, evaluating


def predicted_classes(out: torch.Tensor, loss: Loss, one_hot: bool) -> torch.Tensor:
    """(..., n) class indices: the largest output, or class 1 above the loss's threshold."""
    if one_hot:
        return out.argmax(dim=-1)
    return (out > decision_threshold(loss)).long().squeeze(-1)


def run_errors(
    model: Module, loss: Loss, x: torch.Tensor, labels: torch.Tensor, *, task: str,
    one_hot: bool, preprocessing: dict[str, Any],
) -> torch.Tensor:
    """() or (runs,): the fraction misclassified, or the RMSE in the target's units (in evaluation)."""
    with torch.set_grad_enabled(False), evaluating(model):
        return output_errors(model.forward(x), loss, labels, task=task, one_hot=one_hot,
                             preprocessing=preprocessing)


def output_errors(
    out: torch.Tensor, loss: Loss, labels: torch.Tensor, *, task: str, one_hot: bool,
    preprocessing: dict[str, Any],
) -> torch.Tensor:
    """`run_errors` from the outputs (..., n, out) already computed."""
    if task in CLASSIFICATION:
        return (predicted_classes(out, loss, one_hot) != labels).double().mean(dim=-1)
    diff = preprocess.target_output(preprocessing, out) - labels.double()  # (..., n, t)
    return diff.pow(2).mean(dim=(-2, -1)).sqrt()


def output_metrics(
    out: torch.Tensor, loss: Loss, labels: torch.Tensor, *, task: str, one_hot: bool,
    preprocessing: dict[str, Any], class_names: tuple[str, ...],
) -> dict[str, Any]:
    """One network's metrics from its outputs (n, out): the per-class table and confusion
    matrix, or RMSE, MAE and R^2 (core.data.metrics)."""
    if task in CLASSIFICATION:
        return classification_metrics(labels, predicted_classes(out, loss, one_hot), class_names)
    return regression_metrics(labels, preprocess.target_output(preprocessing, out))
