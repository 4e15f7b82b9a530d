"""Text files as users keep them: plain, or compressed with gzip, bzip2 or xz (by suffix)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import IO

COMPRESSED = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}  # suffix -> the stdlib module


def open_text(path: str | os.PathLike, encoding: str = "utf-8") -> IO[str]:
    """A text file for reading, through gzip, bz2 or lzma when its name says it is compressed."""
    module = COMPRESSED.get(Path(path).suffix.lower())
    opener = importlib.import_module(module).open if module else open
    return opener(path, "rt", newline="", encoding=encoding)


def inner_suffix(path: str | os.PathLike) -> str:
    """The suffix that says what a file holds: '.csv' for both x.csv and x.csv.gz."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    return suffixes[-2] if len(suffixes) > 1 and suffixes[-1] in COMPRESSED else Path(path).suffix.lower()
