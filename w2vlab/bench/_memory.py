"""What ``/proc/self/status`` says of this process's memory, for the benchmark's rows."""

from __future__ import annotations

from pathlib import Path


def status_kib(field: str) -> int:
    """A memory field of this process's ``/proc/self/status`` (``VmHWM``, ``VmRSS``, ...) in KiB; -1 where
    /proc or the field is not available."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return -1
    found = [line for line in lines if line.startswith(f"{field}:")]
    return int(found[0].split()[1]) if found else -1
