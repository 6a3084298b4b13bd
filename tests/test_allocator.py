"""w2vlab._allocator.trim hands freed heap memory back to the OS (glibc), where free() alone keeps it."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from w2vlab._allocator import _libc, is_glibc, trim


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


def test_keep_freed_memory_keeps_freed_blocks_for_reuse():
    """In fresh processes: two 16 MB blocks, touched, freed and allocated again.  Under glibc's
    defaults the freed heap top (32 MB) reaches the trim threshold (twice the dynamic mmap threshold)
    and goes back to the OS, so every round faults its pages in again; after keep_freed_memory() it
    stays for the next round, as a forward pass's tensors do for the next clip."""
    if not is_glibc():
        pytest.skip("not glibc")
    code = """
import ctypes, resource, sys
from w2vlab._allocator import _libc, keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() is True
libc = _libc()
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size, faults = 16 * 1024 * 1024, []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [libc.malloc(size) for _ in range(2)]
    for p in blocks:
        ctypes.memset(p, 1, size)
    for p in reversed(blocks):
        libc.free(p)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[2:]))
"""
    pages = 2 * 16 * 1024 * 1024 // 4096
    faults = {
        setting: int(
            subprocess.run([sys.executable, "-c", code, setting], capture_output=True, text=True, check=True).stdout
        )
        for setting in ("default", "keep")
    }
    assert faults["default"] >= 0.9 * pages, faults  # every page, every round
    assert faults["keep"] <= 0.01 * pages, faults
