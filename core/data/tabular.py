"""Rows of features in, predictions out: CSV (with or without a header) or JSON.

Input files
  CSV   one row per line. The first line is a header when none of its fields is a
        number; then a column named "label" holds the labels and the others, in order,
        the features. Without a header every column is a feature, except that when labels
        are required (`nn-cli evaluate`) the last column is the label.
  JSON  a list of rows: lists of numbers (the last one the label when labels are
        required), or objects whose "label" key is the label and whose other keys, in the
        first object's order, are the features.
A file is JSON when its name ends in .json or its text starts with "["; otherwise CSV.
An error names where the bad value is: a CSV file's line number (blank lines and the header
counted, as an editor counts them), or a JSON list's row number.

Output: one row per input row with its score and class, as CSV (header "score,class") or
JSON (a list of {"score": ..., "class": ...}); scores are written with Python's repr, which
reads back to the same double bit for bit.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.errors import NNError

LABEL = "label"
FORMATS = ("csv", "json")


class TableError(NNError, ValueError):
    """An input file that is not rows of numbers: names the file, the row and the value."""


@dataclass
class Table:
    features: torch.Tensor  # (n, features) float64
    labels: torch.Tensor | None  # (n, 1) float64 of 0/1, when the file has them


def read_table(
    path: str | os.PathLike, *, labels_required: bool = False,
    class_names: list[str] | None = None, label: str = LABEL, any_labels: bool = False,
) -> Table:
    """Read features (and labels, when present or required) from a CSV or JSON file.

    With `class_names` (a model's), the label column may hold those names (or numbers
    naming them), and `labels` holds their class indices; else labels are 0 or 1.
    The label column is the one called `label`; `any_labels` accepts any number there
    (a regression target).
    """
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TableError(f"cannot read {shown!r}: {getattr(e, 'strerror', None) or e}") from None
    cell = _Cells(shown, label, class_names)
    if shown.lower().endswith(".json") or text.lstrip().startswith("["):
        rows, label_index, where = _json_rows(shown, text, labels_required, cell)
    else:
        rows, label_index, where = _csv_rows(shown, text, labels_required, cell)
    if not rows:
        raise TableError(f"{shown}: no rows of features")
    width = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise TableError(f"{shown}: {where[i]} has {len(row)} values; {where[0]} has {width}")
    if labels_required and label_index is None:
        raise TableError(f"{shown}: no labels; add a 'label' column (or key)")
    if label_index is not None and width < 2:
        raise TableError(f"{shown}: rows need at least one feature besides the label")
    data = torch.tensor(rows, dtype=torch.float64)  # (n, columns)
    if label_index is None:
        return Table(data, None)
    keep = [j for j in range(width) if j != label_index]
    labels = data[:, label_index : label_index + 1]  # (n, 1)
    if class_names is not None or any_labels:  # names were mapped to indices while reading
        return Table(data[:, keep], labels)
    bad = ((labels != 0) & (labels != 1)).nonzero()
    if len(bad):
        row = int(bad[0, 0])
        raise TableError(f"{shown}: {where[row]} has label {labels[row, 0].item()!r}; labels are 0 or 1")
    return Table(data[:, keep], labels)


def _number(shown: str, where: str, column: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TableError(f"{shown}: {where}, {column}: {value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise TableError(f"{shown}: {where}, {column}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise TableError(f"{shown}: {where}, {column}: {value!r} is not a finite number")
    return number


@dataclass
class _Cells:
    """Reads one cell: a number, or in the label column, a class name given `class_names`."""

    shown: str
    label: str
    class_names: list[str] | None

    def __call__(self, where: str, column: str, value: Any, is_label: bool) -> float:
        if not (is_label and self.class_names is not None):
            return _number(self.shown, where, column, value)
        text = value if isinstance(value, str) else repr(value)
        text = text.strip()
        if text not in self.class_names and is_number(text) and float(text) == int(float(text)):
            text = str(int(float(text)))  # 1.0 names the class "1"
        if text not in self.class_names:
            raise TableError(f"{self.shown}: {where}, {column}: {value!r} is not a class of "
                             f"the model; its classes: {', '.join(self.class_names)}")
        return float(self.class_names.index(text))


def is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _csv_rows(shown: str, text: str, labels_required: bool, cell: _Cells):
    """Rows, the label column (or None), and where each row is: "line N" of the file."""
    reader = csv.reader(io.StringIO(text))
    lines = [(f"line {reader.line_num}", row) for row in reader  # blank lines skipped, counted
             if row and any(f.strip() for f in row)]
    if not lines:
        return [], None, []
    header = None
    if not any(is_number(field) for field in lines[0][1]):
        header, lines = [field.strip() for field in lines[0][1]], lines[1:]
    if header is not None:
        label_index = header.index(cell.label) if cell.label in header else None
        names = header
    else:
        label_index = len(lines[0][1]) - 1 if labels_required and lines else None
        names = [f"column {j + 1}" for j in range(max((len(r) for _, r in lines), default=0))]
    rows = [
        [cell(where, names[j] if j < len(names) else f"column {j + 1}", field, j == label_index)
         for j, field in enumerate(row)]
        for where, row in lines
    ]
    return rows, label_index, [where for where, _ in lines]


def _json_rows(shown: str, text: str, labels_required: bool, cell: _Cells):
    """Rows, the label column (or None), and where each row is: "row N" of the JSON list
    (a list has no lines to count; a JSON syntax error names its line)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise TableError(f"{shown}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, list):
        raise TableError(f"{shown}: JSON must be a list of rows (lists or objects)")
    if not data:
        return [], None, []
    where = [f"row {i}" for i in range(1, len(data) + 1)]
    if isinstance(data[0], dict):
        keys = list(data[0])
        for i, row in enumerate(data):
            if not isinstance(row, dict) or set(row) != set(keys):
                raise TableError(f"{shown}: {where[i]} does not have the keys of row 1 ({', '.join(keys)})")
        rows = [[cell(w, k, row[k], k == cell.label) for k in keys] for w, row in zip(where, data)]
        return rows, keys.index(cell.label) if cell.label in keys else None, where
    rows = []
    for w, row in zip(where, data):
        if not isinstance(row, list):
            raise TableError(f"{shown}: {w} is not a list of numbers")
        last = len(row) - 1 if labels_required else -1
        rows.append([cell(w, f"value {j + 1}", v, j == last) for j, v in enumerate(row)])
    return rows, len(rows[0]) - 1 if labels_required else None, where


def output_format(fmt: str | None, output: str | None) -> str:
    """The --format given, else the --output file's extension, else CSV."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise TableError(f"format {fmt!r} unknown; accepted: {', '.join(FORMATS)}")
        return fmt
    return "json" if output and output.lower().endswith(".json") else "csv"


def format_predictions(scores: torch.Tensor, classes: torch.Tensor, fmt: str) -> str:
    """Scores (n, k) and classes (n, k) as text; columns score/class, or score_j/class_j."""
    k = scores.shape[1]
    names = ["score", "class"] if k == 1 else [f"{c}_{j}" for c in ("score", "class") for j in range(k)]
    rows = [
        [*(float(s) for s in score_row), *(int(c) for c in class_row)]
        for score_row, class_row in zip(scores.tolist(), classes.tolist())
    ]
    if fmt == "json":
        return json.dumps([dict(zip(names, row)) for row in rows]) + "\n"
    lines = [",".join(names)] + [",".join(repr(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def format_rows(names: list[str], rows: list[list[Any]], fmt: str) -> str:
    """Rows of numbers and class names as CSV (header `names`) or a JSON list of objects.
    Floats are written with repr, which reads back to the same double bit for bit."""
    if fmt == "json":
        return json.dumps([dict(zip(names, row)) for row in rows]) + "\n"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow([repr(v) if isinstance(v, float) else v for v in row])
    return out.getvalue()


def class_value(name: str) -> int | str:
    """A class as written in predictions: its name, or the number when the name is one."""
    return int(name) if name.lstrip("-").isdigit() else name
