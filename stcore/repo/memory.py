"""Giving freed memory back to the operating system during long runs.

A backup allocates and frees megabytes per chunk from several threads. glibc's allocator keeps
freed blocks in per-thread arenas and raises its mmap threshold after the first large free, so
without help the process's resident size creeps up to several packs' worth more than it holds.
``malloc_trim(0)`` returns the free pages of every arena (including the middle of a heap, since
glibc 2.8); a backup calls it once per pack written, which costs well under a millisecond each.
Elsewhere (musl, macOS) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return freed heap memory to the OS if the C library can; True when it did something."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
