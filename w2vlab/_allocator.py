"""glibc's allocator, for the processes w2vlab runs: give freed memory back, or keep it for reuse.

Two opposite needs:

* An export releases a 2.35 GB model, then quantises and reloads file after file: :func:`trim`
  hands the freed heap back to the OS at each of those points.
* A process that embeds clip after clip wants the opposite.  By default glibc serves tensors over
  its (dynamic) mmap threshold with fresh ``mmap`` calls and returns them on ``free``, and trims
  the heap's free top past twice that threshold, so every forward pass faults its pages in again:
  672k minor page faults per 10 s clip for the full-size eager model.  :func:`keep_freed_memory`
  raises the mmap threshold to glibc's 32 MB cap and the trim threshold to 2 GB, so freed tensors
  are reused: 16k faults, and eager took 0.87x and the TorchScript artifact 0.88x the time
  (``python -m w2vlab.bench --only allocator``, full size, paired).  ``GLIBC_TUNABLES`` (no cap)
  removed every fault and measured the same in an earlier probe.  The consumer's command line
  (``embed``, ``score``, ``embed-corpus``), its Ray workers and the benchmark's timing processes
  call it; notebooks and scripts may too.  The cost: the process keeps its peak heap.

Each function is a no-op (returning ``False``) where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc refuses more (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: 2 GB of free heap top kept before trimming

logger = logging.getLogger(__name__)


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


def keep_freed_memory() -> bool:
    """Keep freed tensors' memory in this process for the next call (``mallopt``; see the module
    docstring for the measurements).  Returns whether glibc took both settings."""
    libc = _libc()
    if libc is None:
        return False
    took = (
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    )
    if not took:
        logger.warning("glibc refused the allocator settings; freed memory is returned as usual")
    return took
