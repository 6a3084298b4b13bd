"""Drive the C++ consumer from Python: build ``cpp/`` into ``build/cpp/w2vlab-embed`` and read what it prints.

The program itself (``cpp/w2vlab_embed.cpp``) needs no Python: libtorch, libsndfile and libsoxr.
This module exists for the notebook and the tests, which compare its embeddings with the Python
consumer's.  It needs a source checkout (the build script and ``cpp/`` are not in the wheel).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ROOT", "PROGRAM", "CppRun", "MissingBuildDependencies", "build", "run"]

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "build" / "cpp" / "w2vlab-embed"
BUILD_SCRIPT = ROOT / "scripts" / "build_cpp_consumer.sh"


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


def build() -> Path:
    """Build (or bring up to date) the program; returns its path.

    Raises:
        FileNotFoundError: not a source checkout (no ``scripts/build_cpp_consumer.sh``).
        MissingBuildDependencies: the build dependencies are missing and cannot be installed here.
        RuntimeError: the build failed, with the script's output.
    """
    if not BUILD_SCRIPT.is_file():
        raise FileNotFoundError(f"{BUILD_SCRIPT} not found: building the C++ consumer needs a w2vlab source checkout")
    done = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True)
    if done.returncode == 3:
        raise MissingBuildDependencies(done.stderr.strip())
    if done.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT.name} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return PROGRAM


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
