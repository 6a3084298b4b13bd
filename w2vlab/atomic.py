"""Atomic directory writes: build in a temporary sibling, then rename into place.

A failed write leaves nothing behind and an existing directory byte-identical; an existing
directory is replaced only when ``overwrite`` is true.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


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
        if out_dir.exists():  # swap: old -> backup, new -> place, then drop the backup
            backup = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            out_dir.rename(backup)
            try:
                tmp.rename(out_dir)
            except BaseException:
                backup.rename(out_dir)
                raise
            shutil.rmtree(backup)
        else:
            tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
