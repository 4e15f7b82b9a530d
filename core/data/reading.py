"""A dataset from a file: .csv, .tsv, .json or .npz, read with numpy (never a hand parser).

CSV/TSV  the first line is a header when none of its fields is a number (else the columns
         are named "column 1", ...). Features are numbers; the target column may hold
         numbers or text.
JSON     a list of objects (keys in the first object's order are the columns) or of lists.
NPZ      arrays `x` (n, ...) and `y` (n,) or (n, targets), numbers or text; optional
         `feature_names` and `class_names`. Loaded with allow_pickle=False.

The target is the column `target` names (a header name, or a 1-based column number),
else a column called `label`, else the last. Text labels become classes, sorted; numeric
labels become classes when they are whole numbers with few distinct values (at most
MAX_CLASSES), else a regression target; `task=` forces either. Every bad value is a
one-line DataError naming the file, the row (1-based line of the file) and the column.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import torch

from core.data.compressed import inner_suffix, open_text
from core.data.dataset import DataError, Dataset
from core.data.tabular import is_number

LABEL = "label"
MAX_CLASSES = 50  # more distinct whole-number labels than this read as a regression target
FILE_TASKS = ("classification", "regression")


def read_data_file(path: str | os.PathLike, target: str | None = None, task: str | None = None,
                   sep: str | None = None, skip: int = 0) -> Dataset:
    """The Dataset a file holds; DataError (one line: file, row, column) for anything else.
    `sep` and `skip` are for text tables: their separator (else detected) and the lines
    before the header (or the first row)."""
    shown = str(path)
    if task is not None and task not in FILE_TASKS:
        raise DataError(f"{shown}: task must be one of {', '.join(FILE_TASKS)}, got {task!r}")
    if not Path(path).is_file():
        raise DataError(f"{shown}: no such file (--data takes a .csv, .tsv, .txt, .json or .npz "
                        f"file, compressed .gz, .bz2 or .xz too, or a dataset name: see "
                        f"`nn-cli list dataset`)")
    suffix = inner_suffix(path)
    first = 1  # the row number of the first row of data, as the messages count rows
    if suffix == ".npz":
        x, raw, features, target_name = _npz(shown, path)
    elif suffix == ".json":
        x, raw, features, target_name = _json(shown, path, target)
    elif suffix in (".csv", ".tsv", ".txt"):
        x, raw, features, target_name, first = _delimited(
            shown, path, target, "\t" if suffix == ".tsv" else ",", sep, skip)
    else:
        raise DataError(f"{shown}: unknown file type {suffix or '(none)'!r}; accepted: .csv, .tsv, "
                        f".txt, .json, .npz (and .gz, .bz2, .xz of the text ones)")
    return _dataset(shown, x, raw, features, target_name, task, first)


# -- labels ----------------------------------------------------------------------------


def _dataset(shown, x: np.ndarray, raw: np.ndarray, features, target_name, task, first: int) -> Dataset:
    """From features (n, f) float64 and the raw target column(s) to a Dataset; `first` is
    the row number (as messages count them: the file's line) of the first row of data."""
    n = len(x)
    if n == 0:
        raise DataError(f"{shown}: no rows of data")
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        raise DataError(f"{shown}: row {row + first}, column {features[col]!r}: {float(x[row, col])!r} "
                        f"is not a finite number (NaN and infinities cannot be trained on)")
    numeric = raw.dtype.kind in "fiub"
    if task == "regression" or (task is None and numeric and not _looks_like_classes(raw)):
        if not numeric:
            raise DataError(f"{shown}: target column {target_name!r} holds text; a regression "
                            f"target must be numbers")
        y = torch.as_tensor(raw.astype(np.float64).reshape(n, -1))
        finite = torch.isfinite(y).all(dim=1)
        if not finite.all():
            row = int((~finite).nonzero()[0]) + first
            raise DataError(f"{shown}: row {row}, column {target_name!r}: the target is not a finite number")
        names = (target_name,) if y.shape[1] == 1 else tuple(f"{target_name}_{j}" for j in range(y.shape[1]))
        return Dataset(shown, "regression", torch.as_tensor(x), y, tuple(features),
                       (len(features),), target_names=names)
    if raw.ndim != 1:
        raise DataError(f"{shown}: a class label is one value per row; {target_name!r} has {raw.shape[1]}")
    if numeric:
        if not np.isfinite(raw.astype(np.float64)).all():
            row = int(np.argwhere(~np.isfinite(raw.astype(np.float64)))[0, 0]) + first
            raise DataError(f"{shown}: row {row}, column {target_name!r}: the label is not a finite number")
        values, indices = np.unique(raw.astype(np.float64), return_inverse=True)
        class_names = tuple(_number_text(v) for v in values)
    else:
        text = np.char.strip(raw.astype(str))
        empty = np.flatnonzero(text == "")
        if len(empty):
            raise DataError(f"{shown}: row {int(empty[0]) + first}, column {target_name!r}: the label is empty")
        values, indices = np.unique(text, return_inverse=True)
        class_names = tuple(str(v) for v in values)
    if len(class_names) < 2:
        raise DataError(f"{shown}: every row has the label {class_names[0]!r}; classification "
                        f"needs at least two classes in column {target_name!r}")
    # numbers read as classes that cannot be: perhaps they are quantities to predict
    regression = (f"; if {target_name!r} holds quantities rather than classes, add "
                  f"task=regression (--data file:path={shown},task=regression)") if numeric else ""
    if n < 2 * len(class_names):
        raise DataError(f"{shown}: {n} rows for {len(class_names)} classes; every class needs at "
                        f"least 2 rows, one to learn from and one to test on{regression}")
    counts = np.bincount(indices.reshape(-1), minlength=len(class_names))
    if counts.min() < 2:
        lonely = class_names[int(counts.argmin())]
        raise DataError(f"{shown}: class {lonely!r} has {int(counts.min())} row; every class needs at "
                        f"least 2, one to learn from and one to test on{regression}")
    return Dataset(shown, "binary" if len(class_names) == 2 else "multiclass", torch.as_tensor(x),
                   torch.as_tensor(indices.reshape(-1).astype(np.int64)), tuple(features),
                   (len(features),), class_names, target_names=(target_name,))


def _looks_like_classes(raw: np.ndarray) -> bool:
    """Whole numbers with at most MAX_CLASSES distinct values read as class labels."""
    if raw.ndim != 1:
        return False
    values = raw.astype(np.float64)
    if not np.isfinite(values).all() or not (values == np.round(values)).all():
        return False
    return len(np.unique(values)) <= MAX_CLASSES


def _number_text(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(float(value))


# -- CSV and TSV -------------------------------------------------------------------------


SEPARATORS = {"comma": ",", "semicolon": ";", "tab": "\t", "space": " ", "whitespace": " "}
# NOTE: " " stands for runs of blanks (numpy's delimiter=None, pandas' sep=r"\s+"): files
# written with spaces align their columns with as many as they need.
def _separator(shown: str, sep: str | None) -> str | None:
    """The separator `sep=` names (a word from SEPARATORS or one character); None: detect."""
    if sep is None:
        return None
    text = SEPARATORS.get(str(sep).lower(), str(sep))
    if len(text) != 1 or text in "\"\r\n" or text.isalnum():
        raise DataError(f"{shown}: sep must be one character or one of {', '.join(SEPARATORS)}, "
                        f"got {sep!r}")
    return text


def _split(line: str, separator: str) -> list[str]:
    """One line's fields: runs of blanks for " ", else as the csv module reads them."""
    if separator == " ":
        return line.split()
    return next(csv.reader([line], delimiter=separator), [])


def _detect(lines: list[str], fallback: str) -> str:
    """The separator that splits every one of the first lines into the same number (two or
    more) of fields: comma, tab, semicolon, then blanks; `fallback` when none does."""
    for candidate in (",", "\t", ";", " "):
        counts = {len(_split(line, candidate)) for line in lines}
        if len(counts) == 1 and counts.pop() >= 2:
            return candidate
    return fallback


def _records(f, separator: str):
    """Each line's fields (a quoted field may span lines, for every separator but blanks)."""
    if separator == " ":
        return (line.split() for line in f)
    return csv.reader(f, delimiter=separator)


def _delimited(shown: str, path, target, fallback: str, sep: str | None = None, skip: int = 0):
    separator = _separator(shown, sep)
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise DataError(f"{shown}: skip must be a whole number of lines >= 0, got {skip!r}")
    try:
        with open_text(path) as f:
            for _ in range(skip):  # lines before the table (scikit-learn's CSVs: a counts line)
                f.readline()
            lines = [line for line in (f.readline() for _ in range(5)) if line.strip()]
            if separator is None:
                separator = _detect(lines, fallback)
            first = _split(lines[0], separator) if lines else None
            more = len(lines) > 1 or next((line for line in f if line.strip()), None) is not None
    except (UnicodeDecodeError, csv.Error, OSError, EOFError) as e:
        raise DataError(f"{shown}: not a text table ({e})") from None
    if first is None:
        raise DataError(f"{shown}: the file is empty" + (f" after {skip} skipped lines" if skip else ""))
    header = not any(is_number(field) for field in first)
    if header and not more:  # NOTE: pandas would raise EmptyDataError, numpy warn
        raise DataError(f"{shown}: a header line and no rows of data")
    names = [field.strip() for field in first] if header else [f"column {j + 1}" for j in range(len(first))]
    if len(names) < 2:
        raise DataError(f"{shown}: rows need at least one feature and a target; found one column "
                        f"(for another separator, say which: file:path={shown},sep=semicolon; "
                        f"sep= takes {', '.join(SEPARATORS)} or a character)")
    label = _target_index(shown, names, target, header)
    features = [j for j in range(len(names)) if j != label]
    skip += 1 if header else 0
    read = _with_pandas if _pandas() is not None else _with_numpy
    x, raw = read(shown, path, separator, names, features, label, skip)
    if raw.dtype.kind not in "fiub":
        raw = np.char.strip(raw.astype(str))
        try:
            raw = raw.astype(np.float64)
        except ValueError:
            pass  # text labels
    return x, raw, [names[j] for j in features], names[label], skip + 1


def _pandas():
    """pandas when installed (`pip install 'nn-scratch[datasets]'`): it reads a large CSV
    several times faster than numpy.loadtxt (bench/datasets.py); numpy otherwise."""
    try:
        import pandas
    except ImportError:
        return None
    return pandas


def _with_numpy(shown, path, delimiter, names, features, label, skip):
    try:
        blanks = None if delimiter == " " else delimiter  # numpy: None splits on blanks
        x = np.loadtxt(path, delimiter=blanks, skiprows=skip, usecols=features, dtype=np.float64,
                       ndmin=2, encoding="utf-8")
        raw = np.loadtxt(path, delimiter=blanks, skiprows=skip, usecols=[label], dtype=str,
                         ndmin=1, encoding="utf-8")
    except ValueError:
        _find_bad_cell(shown, path, delimiter, names, features, skip)
        raise  # the scan found nothing: numpy's own complaint is the best there is
    return x, raw


def _with_pandas(shown, path, delimiter, names, features, label, skip):
    pandas = _pandas()
    try:
        frame = pandas.read_csv(path, sep=r"\s+" if delimiter == " " else delimiter, header=None,
                                skiprows=skip, encoding="utf-8", skip_blank_lines=True,
                                low_memory=False)
    except (ValueError, pandas.errors.ParserError):
        _find_bad_cell(shown, path, delimiter, names, features, skip)
        raise
    columns = frame.columns
    numeric = all(frame[columns[j]].dtype.kind in "fiub" for j in features) if len(columns) == len(names) else False
    x = frame[[columns[j] for j in features]].to_numpy(dtype=np.float64) if numeric else None
    raw = frame[columns[label]]
    if x is None or np.isnan(x).any() or raw.isna().any():  # text, empty cells, short rows
        _find_bad_cell(shown, path, delimiter, names, features, skip, label)
        if x is None:
            raise DataError(f"{shown}: features must be numbers")
    return x, raw.to_numpy()


def _target_index(shown: str, names: list[str], target: str | None, header: bool) -> int:
    if target is None:
        return names.index(LABEL) if LABEL in names else len(names) - 1
    if target in names:
        return names.index(target)
    if target.isdigit() and 1 <= int(target) <= len(names):
        return int(target) - 1
    accepted = ", ".join(names) if header else f"a column number 1-{len(names)}"
    raise DataError(f"{shown}: no target column {target!r}; columns: {accepted}")


def _find_bad_cell(shown, path, delimiter, names, features, skip, label: int | None = None) -> None:
    """Slow path, only once the fast reader has refused the file or found a gap: name the
    first bad cell (a short row, an empty cell, a feature that is not a number)."""
    with open_text(path) as f:
        for row, fields in enumerate(_records(f, delimiter), start=1):
            if row <= skip or not fields:
                continue
            if len(fields) != len(names):
                raise DataError(f"{shown}: row {row} has {len(fields)} fields; the table has "
                                f"{len(names)} columns")
            for j in [*features, *([] if label is None else [label])]:
                if not fields[j].strip():
                    raise DataError(f"{shown}: row {row}, column {names[j]!r}: is empty")
                if j != label and not is_number(fields[j]):
                    hint = "; if that line is not part of the table, skip it: skip=N" if row == 1 else ""
                    raise DataError(f"{shown}: row {row}, column {names[j]!r}: {fields[j]!r} "
                                    f"is not a number (features must be numbers){hint}")


# -- JSON and NPZ ------------------------------------------------------------------------


def _json(shown: str, path, target):
    try:
        with open_text(path) as f:
            data = json.loads(f.read())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as e:
        raise DataError(f"{shown}: not valid JSON ({getattr(e, 'msg', e)})") from None
    if not isinstance(data, list) or not data:
        raise DataError(f"{shown}: JSON data must be a non-empty list of rows (objects or lists)")
    if isinstance(data[0], dict):
        names = [str(k) for k in data[0]]
        rows = []
        for i, row in enumerate(data, 1):
            if not isinstance(row, dict) or list(map(str, row)) != names:
                raise DataError(f"{shown}: row {i} does not have the keys of row 1 ({', '.join(names)})")
            rows.append(list(row.values()))
        header = True
    else:
        names = [f"column {j + 1}" for j in range(len(data[0]) if isinstance(data[0], list) else 0)]
        rows = data
        header = False
    if len(names) < 2:
        raise DataError(f"{shown}: rows need at least one feature and a target")
    label = _target_index(shown, names, target, header)
    features = [j for j in range(len(names)) if j != label]
    x = np.empty((len(rows), len(features)), dtype=np.float64)
    for i, row in enumerate(rows, 1):
        if not isinstance(row, list) or len(row) != len(names):
            raise DataError(f"{shown}: row {i} must hold {len(names)} values")
        for k, j in enumerate(features):
            value = row[j]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DataError(f"{shown}: row {i}, column {names[j]!r}: {value!r} is not a number "
                                f"(features must be numbers)")
            x[i - 1, k] = value
    column = [row[label] for row in rows]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in column):
        raw = np.asarray(column, dtype=np.float64)
    else:
        raw = np.asarray([str(v) for v in column])
    return x, raw, [names[j] for j in features], names[label]


def _npz(shown: str, path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError) as e:
        raise DataError(f"{shown}: not a readable .npz archive of arrays ({e})") from None
    if "x" not in arrays or "y" not in arrays:
        raise DataError(f"{shown}: an .npz dataset holds arrays 'x' and 'y'; found "
                        f"{', '.join(arrays) or 'none'}")
    x, raw = arrays["x"], arrays["y"]
    if x.dtype.kind not in "fiub" or x.ndim < 2 or len(x) != len(raw):
        raise DataError(f"{shown}: 'x' must be numbers shaped (n, ...) and 'y' have n rows; got "
                        f"x {x.dtype} {x.shape}, y {raw.shape}")
    x = x.reshape(len(x), -1).astype(np.float64)
    default = [f"feature {j + 1}" for j in range(x.shape[1])]
    features = [str(f) for f in arrays.get("feature_names", default)]
    if len(features) != x.shape[1]:
        raise DataError(f"{shown}: {len(features)} feature_names for {x.shape[1]} features")
    return x, raw, features, "y"
