"""Atomic directory replacement: a reader never finds the destination missing or half-written."""

from __future__ import annotations

import os
import threading

import pytest

from w2vlab import _atomic as atomic
from w2vlab._atomic import atomic_directory


def _write(out, text: str) -> None:
    with atomic_directory(out, overwrite=True) as tmp:
        for i in range(20):  # several files: a half-written directory would show fewer
            (tmp / f"part{i}.txt").write_text(text)


def test_replacement_never_leaves_the_destination_missing(tmp_path):
    out = tmp_path / "art"
    _write(out, "v0")
    seen, stop = [], threading.Event()

    def watch() -> None:  # what a reader polling the destination meets during the swaps
        while not stop.is_set():
            try:
                fd = os.open(out, os.O_RDONLY)  # the destination as it is now, looked up once
            except FileNotFoundError:
                seen.append(None)
                continue
            try:
                names = os.listdir(fd)
                files = sorted(open(n, opener=lambda p, f, fd=fd: os.open(p, f, dir_fd=fd)).read() for n in names)
                if os.fstat(fd).st_ino == os.stat(out).st_ino:  # still the destination: a whole version
                    seen.append(files)
            except FileNotFoundError:  # an old version removed after its swap, or the lookup raced it
                pass
            finally:
                os.close(fd)

    reader = threading.Thread(target=watch)
    reader.start()
    try:
        for version in range(1, 30):
            _write(out, f"v{version}")
    finally:
        stop.set()
        reader.join()
    assert len(seen) > 10, "the reader did not get to look"
    assert None not in seen
    broken = [files for files in seen if len(files) != 20 or len(set(files)) != 1]
    assert not broken, f"a reader saw a partial or mixed destination: {broken[:2]}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no backup or temporary left


def test_fallback_without_exchange_still_replaces_and_cleans_up(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "exchange", lambda a, b: False)  # a system without RENAME_EXCHANGE
    out = tmp_path / "art"
    _write(out, "old")
    _write(out, "new")
    assert {p.read_text() for p in out.iterdir()} == {"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_exchange_swaps_two_directories(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "from_a").touch(), (b / "from_b").touch()
    if not atomic.exchange(a, b):
        pytest.skip("this filesystem has no renameat2(RENAME_EXCHANGE); the two-rename fallback is tested above")
    assert [p.name for p in a.iterdir()] == ["from_b"] and [p.name for p in b.iterdir()] == ["from_a"]


def test_exchange_reports_a_missing_path(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(FileNotFoundError):
        atomic.exchange(tmp_path / "a", tmp_path / "missing")
