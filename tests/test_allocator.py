"""w2vlab.allocator.trim hands freed heap memory back to the OS (glibc), where free() alone keeps it."""

from __future__ import annotations

import ctypes

import pytest

from w2vlab.allocator import _libc, is_glibc, trim


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(not is_glibc(), reason="not glibc")
def test_trim_returns_freed_heap_that_free_keeps():
    libc = _libc()
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    chunk, count = 64 * 1024, 3200  # 200 MB in chunks below the mmap threshold: heap memory
    chunks = [libc.malloc(chunk) for _ in range(count)]
    for pointer in chunks:
        ctypes.memset(pointer, 1, chunk)  # touch every page
    sentinel = libc.malloc(chunk)  # above them: the heap top cannot shrink by itself
    before = rss_bytes()
    for pointer in chunks:
        libc.free(pointer)
    kept = rss_bytes()
    assert trim() is True
    after = rss_bytes()
    libc.free(sentinel)
    assert before - kept < 50e6, "free() alone already returned the memory: this test shows nothing"
    assert kept - after > 150e6

