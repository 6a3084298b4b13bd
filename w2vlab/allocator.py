"""glibc's allocator, for the processes w2vlab runs: give freed memory back.

An export releases a 2.35 GB model, then quantises and reloads file after file: :func:`trim`
hands the freed heap back to the OS at each of those points, so that the next file does not
load on top of memory the process no longer uses.

Each function is a no-op (returning ``False``) where the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc

@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - glibc only
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def is_glibc() -> bool:
    """Whether this process's C library is glibc (where these settings exist)."""
    return _libc() is not None


def trim() -> bool:
    """Collect garbage, then return the heap's free pages to the OS (``malloc_trim(0)``).

    Returns whether memory was released (``False`` also without glibc)."""
    gc.collect()
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False

