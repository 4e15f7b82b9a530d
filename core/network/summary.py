"""A network's layer-by-layer table, like Keras's `model.summary()`: each module's output
shape (one sample's), its number of trainable parameters, and how it runs: the algorithm a
convolution chose when it was built (as cuDNN and oneDNN choose one per shape), and a note
for an image layer that takes images batch-first, around which the network converts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from core.network.layout import BATCH_FIRST
from core.network.protocols import evaluating
from core.network.sequential import Sequential
from core.network.shapes import describe_shape, sample_shape


def layer_table(
    model: Sequential, specs: Sequence[Any], in_shape: int | Sequence[int], dtype: torch.dtype,
) -> list[dict[str, Any]]:
    """One row per module: its name and arguments, one sample's output shape, its parameter
    count; found by a probe forward of one zero sample in evaluation mode (nothing moves)."""
    x = torch.zeros(1, *sample_shape(in_shape), dtype=dtype)  # (1, *sample)
    rows: list[dict[str, Any]] = []
    with torch.set_grad_enabled(False), evaluating(model):
        _rows(model, specs, x, "", rows)
    return rows


def _rows(stack: Sequential, specs: Sequence[Any], x: torch.Tensor, prefix: str,
          rows: list[dict[str, Any]]) -> None:
    """A row per module of `stack`; a block (a residual, a composite layer) is followed by
    its own modules' rows, numbered "2.0", "2.1", ... and indented."""
    outputs = stack.outputs(x)  # batch-first images, whatever layout the layers run in
    inputs = [x, *outputs[:-1]]
    for i, (module, spec, x_in, y) in enumerate(zip(stack.modules, specs, inputs, outputs, strict=True)):
        args = ",".join(f"{k}={v}" for k, v in spec.args.items() if k != "layers")
        rows.append({
            "index": f"{prefix}{i}" if prefix else i,
            "layer": "  " * prefix.count(".") + spec.name + (f":{args}" if args else ""),
            "output_shape": list(y.shape[1:]),
            "parameters": sum(p.value.numel() for p in module.parameters()),
            "runs_as": runs_as(module, stack.conversions[i]),
        })
        inner = getattr(module, "specs", None)  # a block's modules are listed after it
        if inner is not None:
            _rows(module, inner, x_in, f"{prefix}{i}.", rows)


def runs_as(module: Any, conversion: str | None) -> str:
    """How a module runs: its algorithm's name, and "batch-first" when the network converts
    images for it (a layer that declares no layout); "" for the rest."""
    algorithm = getattr(getattr(module, "algorithm", None), "name", "")
    if conversion == BATCH_FIRST:
        return ", ".join(filter(None, [algorithm, "batch-first (converted)"]))
    return algorithm


def format_table(rows: list[dict[str, Any]], in_shape: int | Sequence[int]) -> str:
    """The table as text, with the input shape first and the total last (and a note when the
    network converts images for a layer)."""
    lines = [("#", "layer", "output shape", "parameters", "runs as"),
             ("", "input", describe_shape(sample_shape(in_shape)), "", "")]
    lines += [(str(r["index"]), r["layer"], describe_shape(r["output_shape"]), f"{r['parameters']:,}",
               r.get("runs_as", "")) for r in rows]
    widths = [max(len(line[c]) for line in lines) for c in range(5)]
    text = [f"{a:>{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d:>{widths[3]}}  {e}".rstrip()
            for a, b, c, d, e in lines]
    text.insert(1, "-" * max(len(line) for line in text))
    total = sum(r["parameters"] for r in rows if "." not in str(r["index"]))  # blocks count theirs
    text.append(f"total: {total:,} trainable parameters")
    converted = [r["layer"].split(":")[0] for r in rows
                 if "converted" in r.get("runs_as", "") and "." not in str(r["index"])]
    if converted:
        text.append(f"note: {', '.join(converted)} take(s) images batch-first (no `layout` "
                    f"argument): the network converts from and back to batch-innermost around them")
    return "\n".join(text)
