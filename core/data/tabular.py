"""Rows of features in, predictions out: CSV (with or without a header) or JSON.

Input files
  CSV   one row per line. The first line is a header when none of its fields is a
        number. Without a header every column is a feature, except that when labels
        are required (`nn-cli evaluate`) the last column is the label.
  JSON  a list of rows: lists of numbers (the last one the label when labels are
        required), or objects, whose keys name the columns as a header does.
A file is JSON when its name ends in .json or its text starts with "["; otherwise CSV.
Either may be compressed: .gz, .bz2 or .xz after its own suffix (core.data.compressed).

Columns: a header (or a JSON object's keys) is the user's statement of what each column
is, so given a model's feature names the columns are matched by name, in any order, and a
missing or unknown column is refused; the label column is the model's target column, else
one called "label". Without a header, columns are taken by position, and only when their
count is the model's (the label last); a model trained on a headerless file knows its
columns as "column 1", "column 2", ... and reads them back by those numbers.
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
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from core.data.compressed import inner_suffix, open_text
from core.errors import NNError

LABEL = "label"
FORMATS = ("csv", "json")


class TableError(NNError, ValueError):
    """An input file that is not rows of numbers: names the file, the row and the value."""


@dataclass
class Table:
    features: torch.Tensor  # (n, features) float64
    labels: torch.Tensor | None  # (n, 1) float64 of 0/1, when the file has them
    lines: list[int] = field(default_factory=list)  # the file line where each row starts


class Rows(NamedTuple):
    """Rows of numbers read from a file, the line each starts on, and which columns are
    the features (in the order the reader wants them) and the label."""

    values: list[list[float]]
    lines: list[int]
    feature_index: list[int]
    label_index: int | None


def read_table(
    path: str | os.PathLike, *, labels_required: bool = False,
    class_names: list[str] | None = None, label: str = LABEL, any_labels: bool = False,
    features: Sequence[str] | None = None,
) -> Table:
    """Read features (and labels, when present or required) from a CSV or JSON file.

    With `class_names` (a model's), the label column may hold those names (or numbers
    naming them), and `labels` holds their class indices; else labels are 0 or 1.
    The label column is the one called `label` (else "label"); `any_labels` accepts any
    number there (a regression target). With `features` (a model's feature names), the
    features come back in that order, matched by name when the file names its columns
    (see the module's docstring). Every error names the file and the line (counted from 1,
    blank lines included).
    """
    shown = str(path)
    try:
        with open_text(path, encoding="utf-8-sig") as f:  # -sig: drops a byte-order mark
            text = f.read()
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise TableError(f"cannot read {shown!r}: {getattr(e, 'strerror', None) or e}") from None
    cell = _Cells(shown, label, class_names)
    layout = _Layout(shown, label, labels_required, None if features is None else tuple(features))
    if inner_suffix(path) == ".json" or text.lstrip().startswith("["):
        values, lines, feature_index, label_index = _json_rows(shown, text, layout, cell)
    else:
        values, lines, feature_index, label_index = _csv_rows(shown, text, layout, cell)
    if not values:
        raise TableError(f"{shown}: no rows of features")
    width = len(values[0])
    for row, line in zip(values, lines):
        if len(row) != width:
            raise TableError(
                f"{shown}: line {line} has {len(row)} values; line {lines[0]} has {width}"
            )
    if labels_required and label_index is None:
        raise TableError(f"{shown}: no labels; add a {label!r} column (or key)")
    if label_index is not None and width < 2:
        raise TableError(f"{shown}: rows need at least one feature besides the label")
    data = torch.tensor(values, dtype=torch.float64)  # (n, columns)
    keep = feature_index  # the features, in the order the reader asked for
    if label_index is None:
        return Table(data[:, keep], None, lines)
    labels = data[:, label_index : label_index + 1]  # (n, 1)
    if class_names is not None or any_labels:  # names were mapped to indices while reading
        return Table(data[:, keep], labels, lines)
    bad = ((labels != 0) & (labels != 1)).nonzero()
    if len(bad):
        row = int(bad[0, 0])
        raise TableError(
            f"{shown}: line {lines[row]} has label {labels[row, 0].item()!r}; labels are 0 or 1"
        )
    return Table(data[:, keep], labels, lines)


def _number(shown: str, line: int, column: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TableError(f"{shown}: line {line}, {column}: {_short(value)} is not a number")
    try:
        number = float(value)  # NOTE: a number too large for a double reads as inf
    except ValueError:
        raise TableError(f"{shown}: line {line}, {column}: {_short(value)} is not a number") from None
    if not math.isfinite(number):
        raise TableError(f"{shown}: line {line}, {column}: {_short(value)} is not a finite number")
    return number


def _short(value: Any, limit: int = 40) -> str:
    """repr of a value for a one-line message: a 200000-digit field is cut."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 12]}... ({len(text)} chars)"


@dataclass
class _Cells:
    """Reads one cell: a number, or in the label column, a class name given `class_names`."""

    shown: str
    label: str
    class_names: list[str] | None

    def __call__(self, line: int, column: str, value: Any, is_label: bool) -> float:
        if not (is_label and self.class_names is not None):
            return _number(self.shown, line, column, value)
        text = value if isinstance(value, str) else repr(value)
        text = text.strip()
        if text not in self.class_names and is_number(text) and float(text) == int(float(text)):
            text = str(int(float(text)))  # 1.0 names the class "1"
        if text not in self.class_names:
            raise TableError(f"{self.shown}: line {line}, {column}: {_short(value)} is not a class of "
                             f"the model; its classes: {', '.join(self.class_names)}")
        return float(self.class_names.index(text))


def is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _csv_records(shown: str, text: str) -> list[tuple[int, list[str]]]:
    """(line where it starts, fields) of each non-blank CSV record."""
    reader = csv.reader(io.StringIO(text))
    records, start = [], 1
    try:
        for fields in reader:
            if fields and any(f.strip() for f in fields):
                records.append((start, fields))
            start = reader.line_num + 1  # a quoted field may span lines
    except csv.Error as e:  # e.g. a field over csv's limit of 131072 characters
        raise TableError(f"{shown}: line {reader.line_num}: {e}") from None
    return records


def _csv_rows(shown: str, text: str, layout: _Layout, cell: _Cells) -> Rows:
    records = _csv_records(shown, text)
    if not records:
        return Rows([], [], [], None)
    header = None
    if not any(is_number(field) for field in records[0][1]):
        header, records = [field.strip() for field in records[0][1]], records[1:]
    if not records:
        return Rows([], [], [], None)
    features, label_index = layout(header, len(records[0][1]), records[0][0])
    names = header or []
    values = [
        [cell(line, names[j] if j < len(names) else f"column {j + 1}", field, j == label_index)
         for j, field in enumerate(fields)]
        for line, fields in records
    ]
    return Rows(values, [line for line, _ in records], features, label_index)


@dataclass
class _Layout:
    """Which columns of a file are the features, in the reader's order, and which is the
    label: by name given a header and a model's feature names, else by position."""

    shown: str
    label: str
    labels_required: bool
    features: tuple[str, ...] | None  # a model's feature names; None: the file's own order

    def __call__(self, header: list[str] | None, width: int, line: int) -> tuple[list[int], int | None]:
        if header is not None:
            return self._by_name(header)
        if self.features is None:
            label_index = width - 1 if self.labels_required else None
            return [j for j in range(width) if j != label_index], label_index
        numbered = self._by_number(width)
        if numbered is not None:
            return numbered
        expected = len(self.features) + (1 if self.labels_required else 0)
        if width != expected:
            label = " and the label, last" if self.labels_required else ""
            raise TableError(
                f"{self.shown}: line {line} has {width} values; the model takes "
                f"{len(self.features)} features{label} (a header naming the columns lets "
                f"them come in any order: {', '.join(self.features)})")
        return list(range(len(self.features))), (width - 1 if self.labels_required else None)

    def _label_index(self, header: list[str]) -> int | None:
        for name in (self.label, LABEL):
            if name in header and name not in (self.features or ()):
                return header.index(name)
        return None

    def _by_name(self, header: list[str]) -> tuple[list[int], int | None]:
        repeated = next((name for j, name in enumerate(header) if name in header[:j]), None)
        if repeated is not None:
            raise TableError(f"{self.shown}: column {repeated!r} appears twice in the header")
        label_index = self._label_index(header)
        if self.features is None:
            return [j for j in range(len(header)) if j != label_index], label_index
        label = f" and the label {self.label!r}" if self.label != LABEL else " and a 'label'"
        wanted = f"the model reads the columns {', '.join(self.features)}{label}, by name"
        missing = [name for name in self.features if name not in header]
        if missing:
            raise TableError(f"{self.shown}: no column {missing[0]!r}; {wanted}")
        unknown = [name for j, name in enumerate(header) if name not in self.features and j != label_index]
        if unknown:
            raise TableError(f"{self.shown}: unknown column {unknown[0]!r}; {wanted}")
        return [header.index(name) for name in self.features], label_index

    def _by_number(self, width: int) -> tuple[list[int], int | None] | None:
        """A model trained on a headerless file names its columns "column 1", ...: a
        headerless file as wide as that one is read back by those numbers."""
        numbers = [_column_number(name) for name in (*self.features, self.label)]
        if None in numbers or sorted(numbers) != list(range(1, width + 1)):
            return None
        return [k - 1 for k in numbers[:-1]], numbers[-1] - 1


def _column_number(name: str) -> int | None:
    """N for a generated column name "column N", else None."""
    word, _, number = name.partition(" ")
    return int(number) if word == "column" and number.isdigit() else None


def _json_items(shown: str, text: str) -> list[tuple[int, Any]]:
    """(line where it starts, value) of each element of the JSON list that `text` holds.

    Integers are read as floats (a 5000-digit one is infinite, then refused as such, not
    an OverflowError); NaN and Infinity are read, then refused by `_number`.
    """
    decoder = json.JSONDecoder(parse_int=float)
    items: list[tuple[int, Any]] = []

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def fail(message: str, at: int) -> TableError:
        line = text.count("\n", 0, at) + 1
        return TableError(f"{shown}: line {line}: not valid JSON ({message})")

    i = skip(0)
    if i == len(text) or text[i] != "[":
        try:
            decoder.decode(text)
        except json.JSONDecodeError as e:
            raise fail(e.msg, e.pos) from None
        raise TableError(f"{shown}: JSON must be a list of rows (lists or objects)")
    i, line, counted = skip(i + 1), 1, 0
    empty = i < len(text) and text[i] == "]"
    while not empty:
        line, counted = line + text.count("\n", counted, i), i
        try:
            value, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise fail(e.msg, e.pos) from None
        except RecursionError:  # [[[[... nested deeper than Python's stack
            raise fail("nested too deeply", i) from None
        items.append((line, value))
        i = skip(i)
        if i < len(text) and text[i] == "]":
            break
        if i == len(text) or text[i] != ",":
            raise fail("expected ',' or ']'", i)
        i = skip(i + 1)
    if skip(i + 1) != len(text):
        raise fail("extra data after the list", skip(i + 1))
    return items


def _json_rows(shown: str, text: str, layout: _Layout, cell: _Cells) -> Rows:
    items = _json_items(shown, text)
    if not items:
        return Rows([], [], [], None)
    lines = [line for line, _ in items]
    first_line, first = items[0]
    if isinstance(first, dict):
        keys = list(first)
        for line, row in items:
            if not isinstance(row, dict) or set(row) != set(keys):
                raise TableError(
                    f"{shown}: line {line}: the row does not have the keys of line "
                    f"{first_line} ({', '.join(keys)})"
                )
        features, label_index = layout(keys, len(keys), first_line)
        values = [[cell(line, k, row[k], j == label_index) for j, k in enumerate(keys)]
                  for line, row in items]
        return Rows(values, lines, features, label_index)
    if not isinstance(first, list):
        raise TableError(f"{shown}: line {first_line}: the row is not a list of numbers")
    features, label_index = layout(None, len(first), first_line)
    values = []
    for line, row in items:
        if not isinstance(row, list):
            raise TableError(f"{shown}: line {line}: the row is not a list of numbers")
        values.append([cell(line, f"value {j + 1}", v, j == label_index) for j, v in enumerate(row)])
    return Rows(values, lines, features, label_index)


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
