"""Checks on output paths, made before any training so a bad path costs nothing."""

from __future__ import annotations

from pathlib import Path

from core.errors import SettingsError


def check_output_file(path: str | Path, what: str) -> Path:
    """A file we may create or replace: its folder exists and it is not a folder itself."""
    path = Path(path)
    if path.is_dir():
        raise SettingsError(f"{what} path {str(path)!r} is a folder; give a file name")
    if not path.parent.is_dir():
        raise SettingsError(f"{what} path {str(path)!r}: folder {str(path.parent)!r} does not exist")
    return path


def check_output_dir(path: str | Path, what: str) -> Path:
    """A folder we may create: not an existing file, and not under one."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise SettingsError(f"{what} folder {str(path)!r}: {str(p)!r} is a file, not a folder")
    return path
