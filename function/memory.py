"""glibc's allocator, told to give memory back: few arenas, and a trim after huge images.

Freed memory otherwise stays in the process: each thread that allocates gets an arena of its own (up to 8 per core),
and a freed block that is not at the top of its heap is kept for reuse. After a few huge images the process would stay
gigabytes larger than what is live (issue #11: 1.4 → 5 GB over 14 requests of 81 Mpx).
"""

from __future__ import annotations

import ctypes
import os

MALLOC_ARENA_MAX = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number
# Only images this large are worth a trim (a few milliseconds of walking the heaps, in the CPU pool).
TRIM_AFTER_PIXELS = 16_000_000


def _libc():
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return None
    except (ValueError, OSError):  # not glibc: nothing to tune
        return None
    return ctypes.CDLL(None)


def limit_malloc_arenas() -> None:
    """The environment variable MALLOC_ARENA_MAX is set where the process starts (Makefile, Dockerfile); this covers
    every other way of starting it."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, MALLOC_ARENA_MAX)


def trim_heap() -> None:
    """Return free memory to the system, from every arena, middle of the heap included (glibc's malloc_trim)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def rss_bytes() -> int:
    """The process's resident memory now (Linux's /proc; 0 where there is none): what a model's load adds to it is
    that model's footprint on the CPU."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
