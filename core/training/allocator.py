"""Keeping freed memory in the process: glibc's malloc, tuned once through ctypes.

A training step allocates and frees the same few temporaries every step. glibc serves a
block of more than its mmap threshold (128 KiB to start) by mmap and gives it back to the
kernel when freed, and trims the top of its heap past the trim threshold; the next step's
block of the same size is then faulted in again, page by page (up to about 900 page faults
per step for bench/images.py's CNN at batch 256, on torch.nn's side as much as ours).
`keep_freed_memory` raises both thresholds, as `GLIBC_TUNABLES=glibc.malloc.trim_threshold=
1073741824:glibc.malloc.mmap_threshold=33554432` would at start-up: blocks under 32 MiB come
from the heap, and up to 1 GiB of freed heap stays with the process for the next step.
The cost: the process keeps its peak of memory until it exits instead of returning it.

Where the C library is not glibc (macOS, musl) it does nothing. bench/README.md ("the
allocator") has the figures with and without.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 2**30  # bytes of freed heap kept (1 GiB)
MMAP_THRESHOLD = 32 * 2**20  # blocks from this size on still come from mmap (32 MiB)


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's malloc as above, once per process; True when it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
