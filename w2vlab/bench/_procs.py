"""Benchmark child processes, from the parent's side: one run at a time, or several in lockstep.

The children are the functions of :mod:`w2vlab.bench._child`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from w2vlab.bench._child import HWM_MARKER, REPORT_MARKER


class ChildRun(NamedTuple):
    wall_s: float  # from spawning the interpreter to its exit
    peak_rss_bytes: float  # the child's own VmHWM
    report: dict[str, Any]  # what the child function returned


def package_root() -> Path:
    """The folder holding this copy of the ``w2vlab`` package: the checkout in a development install,
    ``site-packages`` in a wheel install (this file is ``<root>/w2vlab/bench/_procs.py`` in both)."""
    return Path(__file__).resolve().parents[2]


def child_env(threads: int) -> dict[str, str]:
    """This environment with ``threads`` OpenMP/MKL threads, and this copy of w2vlab first on the path
    (:func:`package_root`), so that a child imports the very code that started it."""
    root = str(package_root())
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONPATH": path}


def run_child_report(name: str, *args: Any, env: dict[str, str]) -> ChildRun:
    """Run :mod:`w2vlab.bench._child` function ``name`` with ``args`` in a fresh interpreter.

    The peak is the child's own ``VmHWM`` (per address space, so it starts at zero at exec);
    ``ru_maxrss`` would also count the forked copy of this process before exec.
    """
    command = [sys.executable, "-m", "w2vlab.bench._child", name, *map(str, args)]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(
            f"benchmark child failed ({result.returncode}): {' '.join(command[3:])}\n{result.stderr[-2000:]}"
        )
    report = json.loads(result.stdout.rsplit(f"{REPORT_MARKER} ", 1)[1].splitlines()[0])
    kib = int(result.stdout.rsplit(f"{HWM_MARKER} ", 1)[1].split()[0])
    return ChildRun(wall, kib * 1024.0, report)


def run_child(name: str, *args: Any, env: dict[str, str]) -> tuple[float, float]:
    """:func:`run_child_report` without the report: (wall seconds, the child's peak RSS in bytes)."""
    child = run_child_report(name, *args, env=env)
    return child.wall_s, child.peak_rss_bytes


def lockstep(
    children: dict[str, list[Any]], env: dict[str, str], rounds: int, warmup: int, log: Path
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    """Start one :mod:`w2vlab.bench._child` process per entry of ``children`` (name -> child and its
    arguments), then ask each in turn for a round, ``warmup + rounds`` times, so that the machine's
    drift hits every process alike.  Returns name -> the last ``rounds`` answers, and name -> the
    child's final report.  stderr goes to ``log``."""
    from w2vlab.bench._child import READY_MARKER, ROUND_MARKER

    def answer(name: str, proc: subprocess.Popen, marker: str) -> str:
        for line in proc.stdout:
            if line.startswith(marker):
                return line[len(marker) :].strip()
        raise RuntimeError(f"benchmark child {name} exited ({proc.wait()}); its stderr is in {log}")

    with open(log, "w") as err:
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", "w2vlab.bench._child", *map(str, args)],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
            for name, args in children.items()
        }
        try:
            for name, proc in procs.items():
                answer(name, proc, READY_MARKER)
            out: dict[str, list[dict[str, Any]]] = {name: [] for name in procs}
            for i in range(warmup + rounds):
                for name, proc in procs.items():
                    proc.stdin.write("round\n")
                    proc.stdin.flush()
                    reply = json.loads(answer(name, proc, ROUND_MARKER))
                    if i >= warmup:
                        out[name].append(reply)
            reports = {}
            for name, proc in procs.items():
                proc.stdin.close()
                reports[name] = json.loads(answer(name, proc, REPORT_MARKER))
                proc.wait(timeout=600)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
    return out, reports
