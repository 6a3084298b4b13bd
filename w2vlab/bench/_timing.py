"""Wall-clock timing for the benchmark and its child processes: medians, and runs alternated so
that a shared machine's drift hits every side alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs.

    Three warm-up runs by default: TorchScript's profiling executor optimises a graph only
    after its first two calls.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def alternated_seconds(fns: Sequence[Callable[[], Any]], repeats: int, warmup: int = 3) -> list[list[float]]:
    """Wall times of each ``fns[i]()`` over ``repeats`` rounds, called in turn (f0, f1, ..., f0, f1, ...)
    after ``warmup`` rounds: one list of times per function."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times):
            start = time.perf_counter()
            fn()
            fn_times.append(time.perf_counter() - start)
    return times


def paired_seconds(a: Callable[[], Any], b: Callable[[], Any], repeats: int, warmup: int = 3) -> tuple[float, float]:
    """Medians of ``a()`` and ``b()`` called alternately (a, b, a, b, ...) after ``warmup`` pairs.

    On a shared machine the speed drifts by 2x within minutes; alternating makes the drift hit
    both sides alike, so their ratio stays meaningful where two separate medians would not.
    """
    times_a, times_b = alternated_seconds((a, b), repeats, warmup)
    return statistics.median(times_a), statistics.median(times_b)
