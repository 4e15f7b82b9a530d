"""A network's layer-by-layer table, like Keras's `model.summary()`: each module's output
shape (one sample's) and its number of trainable parameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

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
        _rows(model.modules, specs, x, "", rows)
    return rows


def _rows(modules, specs, x, prefix: str, rows: list[dict[str, Any]]) -> torch.Tensor:
    """A row per module; a block (residual, a composite layer) is followed by its own
    modules' rows, numbered "2.0", "2.1", ... and indented."""
    for i, (module, spec) in enumerate(zip(modules, specs, strict=True)):
        row: dict[str, Any] = {"index": f"{prefix}{i}" if prefix else i}
        rows.append(row)
        inner = getattr(module, "specs", None)  # a block's modules are listed after it
        if inner is not None:
            _rows(module.modules, inner, x, f"{prefix}{i}.", rows)
        x = module.forward(x)
        args = ",".join(f"{k}={v}" for k, v in spec.args.items() if k != "layers")
        row.update({
            "layer": "  " * prefix.count(".") + spec.name + (f":{args}" if args else ""),
            "output_shape": list(x.shape[1:]),
            "parameters": sum(p.value.numel() for p in module.parameters()),
        })
    return x


def format_table(rows: list[dict[str, Any]], in_shape: int | Sequence[int]) -> str:
    """The table as text, with the input shape first and the total last."""
    lines = [("#", "layer", "output shape", "parameters"),
             ("", "input", describe_shape(sample_shape(in_shape)), "")]
    lines += [(str(r["index"]), r["layer"], describe_shape(r["output_shape"]), f"{r['parameters']:,}")
              for r in rows]
    widths = [max(len(line[c]) for line in lines) for c in range(4)]
    text = [f"{a:>{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d:>{widths[3]}}".rstrip()
            for a, b, c, d in lines]
    text.insert(1, "-" * len(text[0]))
    total = sum(r["parameters"] for r in rows if "." not in str(r["index"]))  # blocks count theirs
    return "\n".join(text + [f"total: {total:,} trainable parameters"])
