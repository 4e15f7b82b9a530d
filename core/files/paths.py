"""Checks on output folders, made before any training so a bad path costs nothing.

(Output files are checked by core.files.atomic.check_writable.)
"""

from __future__ import annotations

from pathlib import Path

from core.errors import SettingsError


def check_output_dir(path: str | Path, what: str) -> Path:
    """A folder we may create: not an existing file, and not under one."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise SettingsError(f"{what} folder {str(path)!r}: {str(p)!r} is a file, not a folder")
    return path
