"""Drive the C++ consumer from Python: build its sources into ``w2vlab-embed`` and read what it prints.

The program itself (``w2vlab/runtime/cpp/w2vlab_embed.cpp``) needs no Python: libtorch, libsndfile
and libsoxr.  This module exists for the notebook and the tests, which compare its embeddings with
the Python consumer's.  The sources ship inside the package; the build goes to ``build/cpp/`` in a
source checkout and to a user cache folder (``$XDG_CACHE_HOME/w2vlab/cpp``) in an installed one,
unless a folder is passed in.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "ROOT",
    "SOURCES",
    "PROGRAM",
    "CppRun",
    "MissingBuildDependencies",
    "default_build_dir",
    "build",
    "cmake_build",
    "run",
]

logger = logging.getLogger(__name__)

SOURCES = Path(__file__).resolve().parent / "cpp"  # CMakeLists.txt + w2vlab_embed.cpp, package data
ROOT = Path(__file__).resolve().parents[2]  # the source checkout, when this is one
BUILD_SCRIPT = ROOT / "scripts" / "build_cpp_consumer.sh"
PROGRAM_NAME = "w2vlab-embed"
BUILD_PACKAGES = "g++ cmake pkg-config libsndfile1-dev libsoxr-dev"


def in_checkout() -> bool:
    """Whether this w2vlab is a source checkout (its build script next to the package) rather than an install."""
    return BUILD_SCRIPT.is_file() and (ROOT / "pyproject.toml").is_file()


def default_build_dir() -> Path:
    """``build/cpp`` in a source checkout; otherwise ``$XDG_CACHE_HOME/w2vlab/cpp`` (``~/.cache/w2vlab/cpp``)."""
    if in_checkout():
        return ROOT / "build" / "cpp"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "w2vlab" / "cpp"


PROGRAM = default_build_dir() / PROGRAM_NAME


class MissingBuildDependencies(RuntimeError):
    """The compiler, cmake or the libsndfile / libsoxr headers are missing and cannot be installed
    here (not root, or no apt-get): the build script's exit status 3."""


@dataclass
class CppRun:
    """One run of the program: its exit status, path -> embedding [D], path -> error line."""

    returncode: int
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    stderr: str = ""


def missing_build_tools() -> list[str]:
    """The compiler, cmake, pkg-config or pkg-config modules (sndfile, soxr) that are not there."""
    missing = [tool for tool in ("c++", "cmake", "pkg-config") if shutil.which(tool) is None]
    if "pkg-config" not in missing:
        missing += [m for m in ("sndfile", "soxr") if subprocess.run(["pkg-config", "--exists", m]).returncode != 0]
    return missing


def cmake_build(build_dir: str | Path | None = None) -> Path:
    """Configure (first time, or for another torch) and build the program into ``build_dir``; its path.

    One build at a time per folder (a lock file next to it): parallel test workers and a notebook
    may ask together.  Raises :class:`MissingBuildDependencies` when a tool or header is missing and
    ``RuntimeError`` with cmake's output when the build fails.
    """
    import torch

    build_dir = Path(build_dir or default_build_dir()).resolve()
    missing = missing_build_tools()
    if missing:
        raise MissingBuildDependencies(
            f"building the C++ consumer needs {', '.join(missing)}; install: sudo apt-get install {BUILD_PACKAGES}"
        )
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    prefix = torch.utils.cmake_prefix_path
    start = time.perf_counter()
    with open(build_dir.parent / f".{build_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cache = build_dir / "CMakeCache.txt"
        facts = (f"CMAKE_PREFIX_PATH:UNINITIALIZED={prefix}\n", f"CMAKE_HOME_DIRECTORY:INTERNAL={SOURCES}\n")
        if not cache.is_file() or not all(fact in cache.read_text() for fact in facts):
            # first build, another torch, or a folder configured for other sources (the sources moved
            # into the package; a build folder from before points at the old ones): from scratch
            shutil.rmtree(build_dir, ignore_errors=True)
            configure = ["-S", str(SOURCES), "-B", str(build_dir), f"-DCMAKE_PREFIX_PATH={prefix}"]
            _cmake(*configure, "-DCMAKE_BUILD_TYPE=Release")
        _cmake("--build", str(build_dir), "-j", str(os.cpu_count() or 1))
    logger.info("built %s in %.0f s", build_dir / PROGRAM_NAME, time.perf_counter() - start)
    return build_dir / PROGRAM_NAME


def _cmake(*args: str) -> None:
    done = subprocess.run(["cmake", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cmake {' '.join(args[:2])} exited with {done.returncode}:\n{done.stdout}{done.stderr}")


def build(build_dir: str | Path | None = None) -> Path:
    """Build (or bring up to date) the program into ``build_dir`` (default :func:`default_build_dir`); its path.

    In a source checkout whose build dependencies are missing, ``scripts/build_cpp_consumer.sh``
    installs them (apt-get, as root) and builds.

    Raises:
        MissingBuildDependencies: the build dependencies are missing and cannot be installed here.
        RuntimeError: the build failed, with cmake's output.
    """
    if not missing_build_tools() or not in_checkout():
        return cmake_build(build_dir)
    target = Path(build_dir or default_build_dir()).resolve()
    env = {**os.environ, "PYTHON": sys.executable}  # the script builds with this interpreter's torch
    done = subprocess.run([str(BUILD_SCRIPT), str(target)], capture_output=True, text=True, env=env)
    if done.returncode == 3:
        raise MissingBuildDependencies(done.stderr.strip())
    if done.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT.name} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return target / PROGRAM_NAME


def run(
    artifact: str | Path,
    files: Sequence[str | Path],
    aoti: bool = False,
    threads: int | None = None,
    program: Path = PROGRAM,
) -> CppRun:
    """Embed ``files`` with the program and the waveform artifact ``artifact`` (directory or file).

    Returns:
        the run, its embeddings parsed from ``path<TAB>v1 ... vD`` lines and its per-file errors
        from ``w2vlab-embed: path: message`` lines.
    """
    if not Path(program).is_file():
        raise FileNotFoundError(f"{program} not built yet; call w2vlab.runtime._cpp.build() first")
    args = [
        str(program),
        *(["--aoti"] if aoti else []),
        *(["--threads", str(threads)] if threads else []),
        str(artifact),
        *map(str, files),
    ]
    done = subprocess.run(args, capture_output=True, text=True)
    result = CppRun(done.returncode, stderr=done.stderr)
    for line in done.stdout.splitlines():
        path, values = line.split("\t")
        result.embeddings[path] = np.array(values.split(), dtype=np.float32)
    for line in done.stderr.splitlines():
        path, sep, message = line.removeprefix("w2vlab-embed: ").partition(": ")
        if sep and path in set(map(str, files)):
            result.errors[path] = message
    return result
