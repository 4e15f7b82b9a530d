"""Atomic file writes: a reader, or a crash, sees the old file or the new one, never half of one.

The bytes go to a temporary file in the target's own directory (so the rename stays on one
file system), are flushed and fsynced, then `os.replace`d over the target, and the directory
is fsynced so the rename itself survives a power cut. On any error the temporary file is
removed and the previous target is left untouched.

One writer per file: `write_lock(path)` holds a lock (".<name>.lock" beside the target,
kept by the `filelock` library; the operating system drops it when its process dies) for
as long as a run may write `path`. A second run that would write the same file is refused
in one line, and only the lock's holder removes the temporary files a killed writer left,
so no live run's temporary file is ever deleted under it.

The lock file exists only while a run writes: its holder removes it before letting go, so
a clean exit leaves nothing beside the target (a killed run leaves an empty one, which the
next run takes over). NOTE: removing a lock file is safe only because every taker checks,
once it holds the lock, that the file it locked is still the one at the lock's path: a run
that opened the file just before its holder removed it locks a file nobody else can see,
sees that, and lets go (filelock keeps its own lock files for this reason: tox-dev/filelock
issues 27 and 574).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from core.errors import NNError

TEMP_SUFFIX = ".tmp"  # temporary files are ".<name>.<random>.tmp" beside the target
LOCK_SUFFIX = ".lock"  # the lock of a target is ".<name>.lock" beside it


class WriteError(NNError, OSError):
    """A file could not be written: names the path and the reason."""


def check_writable(path: str | os.PathLike) -> Path:
    """Fail now, before any long work, if `path` cannot be written later."""
    path = Path(path)
    directory = path.parent
    if not directory.is_dir():
        raise WriteError(f"cannot write {str(path)!r}: directory {str(directory)!r} does not exist")
    if path.is_dir():
        raise WriteError(f"cannot write {str(path)!r}: it is a directory; give a file name")
    if not os.access(directory, os.W_OK):
        raise WriteError(f"cannot write {str(path)!r}: directory {str(directory)!r} is not writable")
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace `path` with `data` atomically; returns the path."""
    path = check_writable(path)
    directory = path.parent
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the mode an ordinary open() would have.
        os.chmod(temp, _mode_for(path))
        os.replace(temp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        if isinstance(e, OSError):
            raise WriteError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
        raise
    fsync_directory(directory)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def temp_files(path: str | os.PathLike) -> list[Path]:
    """Temporary files of writes to `path` that never finished (their process was killed)."""
    path = Path(path)
    # mkstemp's names: prefix, 8 characters of [a-z0-9_], suffix.
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}{re.escape(TEMP_SUFFIX)}")
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))


def lock_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}{LOCK_SUFFIX}")


@contextlib.contextmanager
def write_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold the write lock of `path` for the block, or fail at once if another run holds it.

    Once held, the temporary files of earlier, killed writes of `path` are removed: no live
    process can own them.
    """
    path = check_writable(path)
    lock, held = _take_lock(path)
    try:
        remove_stale_temp_files(path)
        yield path
    finally:
        try:  # while still holding it: no one else can have the file at this path
            if os.path.samestat(os.stat(lock_file(path)), held):
                os.unlink(lock_file(path))
        except FileNotFoundError:
            pass
        finally:
            lock.release()


class _Unlinked(Exception):
    """The lock was taken on a file its holder had just removed from the lock's path."""


def _take_lock(path: Path, attempts: int = 5):
    """(the held FileLock, os.stat_result of the locked file), or WriteError at once when
    another run holds the lock."""
    from filelock import FileLock, Timeout

    where = lock_file(path)
    for _ in range(attempts):  # a lock file removed under us: its holder just let go, try again
        held: list[os.stat_result] = []

        def still_there(fd: int) -> None:
            locked = os.fstat(fd)
            try:
                here = os.stat(where)
            except FileNotFoundError:
                raise _Unlinked from None
            if not os.path.samestat(here, locked):
                raise _Unlinked
            held.append(locked)

        lock = FileLock(where, on_acquired=still_there)
        try:
            lock.acquire(timeout=0)
        except _Unlinked:
            continue
        except Timeout:
            break
        except OSError as e:
            raise WriteError(f"cannot write {str(path)!r}: cannot lock it: {e.strerror or e}") from None
        return lock, held[0]
    raise WriteError(
        f"cannot write {str(path)!r}: another run is writing it (it holds "
        f"{str(where)!r}); wait for it to end, or write to another file"
    )


@contextlib.contextmanager
def write_locks(*paths: str | os.PathLike | None) -> Iterator[None]:
    """`write_lock` on each path given (None: skipped), all held for the block."""
    with contextlib.ExitStack() as stack:
        for path in paths:
            if path is not None:
                stack.enter_context(write_lock(path))
        yield


def remove_stale_temp_files(path: str | os.PathLike) -> None:
    """Remove what a killed writer of `path` left; only while holding `write_lock(path)`."""
    for temp in temp_files(path):
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def fsync_directory(directory: Path) -> None:
    """Make a rename inside `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777  # keep the mode of the file being replaced
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
