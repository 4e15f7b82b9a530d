"""How well predictions match: per-class table and confusion matrix, or RMSE, MAE and R^2.

Plain functions of tensors, returning JSON-friendly dicts; `text_report` renders one.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def confusion_matrix(true: torch.Tensor, predicted: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(classes, classes) counts: row = true class, column = predicted class."""
    flat = true.long() * n_classes + predicted.long()  # (n,)
    return torch.bincount(flat, minlength=n_classes * n_classes).view(n_classes, n_classes)


def classification_metrics(
    true: torch.Tensor, predicted: torch.Tensor, class_names: tuple[str, ...] | list[str]
) -> dict[str, Any]:
    """Error, accuracy, per-class precision/recall/F1/support and the confusion matrix."""
    k = len(class_names)
    matrix = confusion_matrix(true.cpu(), predicted.cpu(), k)  # (k, k)
    correct = matrix.diagonal().double()  # (k,)
    support = matrix.sum(dim=1).double()  # (k,) true rows of each class
    claimed = matrix.sum(dim=0).double()  # (k,) rows predicted as each class
    precision = torch.where(claimed > 0, correct / claimed.clamp(min=1), torch.zeros_like(correct))
    recall = torch.where(support > 0, correct / support.clamp(min=1), torch.zeros_like(correct))
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / both.clamp(min=1e-300), torch.zeros_like(both))
    n = int(matrix.sum())
    right = int(correct.sum())
    return {
        "error": (n - right) / n if n else 0.0,
        "accuracy": right / n if n else 0.0,
        "classes": [
            {"class": name, "precision": p, "recall": r, "f1": f, "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision.tolist(), recall.tolist(),
                                        f1.tolist(), support.tolist())
        ],
        "confusion_matrix": matrix.tolist(),
    }


def regression_metrics(true: torch.Tensor, predicted: torch.Tensor, images: bool = True) -> dict[str, Any]:
    """RMSE and MAE (in the target's units), R^2 (1 - SSE / total sum of squares), and for
    `images` the PSNR in dB, 10 log10(peak^2 / MSE) with the targets' range as the peak (1
    for images in [0, 1], as the denoising task's): a figure of pixels, meaningless for a
    table's target."""
    true, predicted = true.double().cpu(), predicted.double().cpu()  # (n, targets)
    diff = predicted - true
    total = ((true - true.mean(dim=0)) ** 2).sum()
    sse = (diff**2).sum()
    mse = float(diff.pow(2).mean())
    peak = float(true.max() - true.min()) if true.numel() else 0.0
    metrics = {
        "rmse": mse**0.5,
        "mae": float(diff.abs().mean()),
        "r2": float(1 - sse / total) if total > 0 else 0.0,
    }
    if images:
        metrics["psnr"] = 10 * math.log10(peak**2 / mse) if mse > 0 and peak > 0 else None  # None: exact
    return metrics


def sequence_metrics(logits: torch.Tensor, next_ids: torch.Tensor) -> dict[str, Any]:
    """A next-token model's figures on held-out text: the mean cross-entropy per token (in
    nats), bits per character (the same in bits: / ln 2), perplexity (its exp), and how
    often the likeliest token is the next one. logits (n, time, vocab), next_ids (n, time)."""
    logits, ids = logits.double().cpu(), next_ids.long().cpu()
    # NOTE: log softmax as z - max - log(sum(exp(z - max))), stable for any logits.
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    log_probs = shifted - shifted.exp().sum(dim=-1, keepdim=True).log()  # (n, time, vocab)
    nats = float(-log_probs.gather(-1, ids.unsqueeze(-1)).mean()) if ids.numel() else 0.0
    accuracy = float((logits.argmax(dim=-1) == ids).double().mean()) if ids.numel() else 0.0
    return {"error": 1 - accuracy, "accuracy": accuracy, "loss_per_token": nats,
            "bits_per_char": nats / math.log(2), "perplexity": math.exp(nats), "tokens": ids.numel()}


def text_report(metrics: dict[str, Any]) -> str:
    """The per-class table and confusion matrix (classification), the next-token figures
    (sequence) or the regression figures."""
    if "bits_per_char" in metrics:
        return (f"loss {metrics['loss_per_token']:.4f} per token   {metrics['bits_per_char']:.4f} bits "
                f"per character   perplexity {metrics['perplexity']:.3f}   next token right "
                f"{metrics['accuracy']:.1%} (of {metrics['tokens']:,})")
    if "rmse" in metrics:
        return (f"RMSE {metrics['rmse']:.4g}   MAE {metrics['mae']:.4g}   R^2 {metrics['r2']:.4f}"
                + (f"   PSNR {metrics['psnr']:.2f} dB" if metrics.get("psnr") is not None else ""))
    names = [row["class"] for row in metrics["classes"]]
    width = max(5, *(len(n) for n in names))
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for row in metrics["classes"]:
        lines.append(f"{row['class']:<{width}}  {row['precision']:>9.3f}  {row['recall']:>6.3f}  "
                     f"{row['f1']:>5.3f}  {row['support']:>7}")
    cell = max(4, *(len(str(v)) for r in metrics["confusion_matrix"] for v in r))
    # Columns by class name when the names fit the cells, else by class number (rows say which).
    fits = all(len(n) <= cell for n in names)
    heads = names if fits else [str(j) for j in range(len(names))]
    rows = names if fits else [f"{j} {n}" for j, n in enumerate(names)]
    side = max(len(r) for r in rows)
    lines.append("")
    lines.append("confusion matrix (rows: true, columns: predicted)")
    lines.append(f"{'':<{side}}  " + " ".join(f"{h:>{cell}}" for h in heads))
    for name, row in zip(rows, metrics["confusion_matrix"]):
        lines.append(f"{name:<{side}}  " + " ".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)
