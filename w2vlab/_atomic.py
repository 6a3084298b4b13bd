"""Atomic writes: a JSON file, or a whole directory built in a temporary sibling, then renamed into place.

A failed write leaves nothing behind and an existing directory byte-identical; an existing
directory is replaced only when ``overwrite`` is true.  The replacement is one atomic swap on
Linux (``renameat2(RENAME_EXCHANGE)``), so a reader never finds the destination missing.  Where
the kernel, libc or filesystem lack that call, two renames are used instead (old -> backup,
new -> place) and the destination is absent between them; the backup is restored on failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


def write_json(path: Path, obj: Any, sort_keys: bool = False) -> None:
    """Replace ``path`` with ``obj`` as indented JSON, atomically (temporary sibling, fsync, rename):
    a reader, or a run stopped part way, never finds half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the system cannot (nothing moved)."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:  # not glibc >= 2.28 (or not Linux)
        return False
    if renameat2(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # flag or call unsupported here
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


@contextlib.contextmanager
def atomic_directory(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes ``out_dir`` when the block succeeds.

    Raises:
        FileExistsError: ``out_dir`` exists (and is not empty) and ``overwrite`` is false.
        NotADirectoryError: ``out_dir`` is a file.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output path {out_dir} is a file; expected a directory (or a new path)")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} already exists and is not empty; pass --force (overwrite=True) to replace it")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except PermissionError as e:
        raise PermissionError(
            f"cannot write into {out_dir.parent} ({e.strerror}); choose another output directory or fix its permissions"
        ) from e
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
        for f in tmp.rglob("*"):
            f.chmod((0o777 if f.is_dir() else 0o666) & ~umask)
        if not out_dir.exists():
            tmp.rename(out_dir)
        elif not exchange(tmp, out_dir):  # else the new directory is in place, the old one at tmp (removed below)
            _replace_in_two_renames(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_in_two_renames(new: Path, out_dir: Path) -> None:
    """old -> backup, new -> place, then drop the backup; the old directory comes back on failure."""
    backup = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    out_dir.rename(backup)
    try:
        new.rename(out_dir)
    except BaseException:
        backup.rename(out_dir)
        raise
    shutil.rmtree(backup)
