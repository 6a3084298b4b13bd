"""Frontend metrics: the scripted torch frontend against HF's feature extractor, alone and on busy cores."""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence

import torch

from w2vlab._benchrow import metric_row
from w2vlab.bench._context import BenchContext, Rows
from w2vlab.bench._synth import SR
from w2vlab.bench._timing import alternated_seconds, paired_seconds


def metric_frontend_vs_hf(ctx: BenchContext) -> Rows:
    """The scripted torch frontend against the HF extractor on 10 s and 60 s clips."""
    from w2vlab._features import TorchFeatureExtractor
    from w2vlab.export._suite import synthetic_speech
    from w2vlab.export._torchscript import script_module

    frontend = script_module(TorchFeatureExtractor(ctx.config).eval())
    rows = {}
    for seconds in (10, 60):
        wave = synthetic_speech(seconds * SR, seed=seconds)
        hf = lambda wave=wave: ctx.fe(wave, sampling_rate=SR, return_tensors="pt", return_attention_mask=True)  # noqa: E731
        ours = lambda wave=wave: frontend(torch.from_numpy(wave)[None])  # noqa: E731
        with torch.inference_mode():
            t_hf, t_ours = paired_seconds(hf, ours, ctx.repeats)
            ref, got = hf(), ours()
        diff = float((ref["input_features"] - got[0]).abs().max())
        rows[f"frontend_vs_hf_{seconds}s"] = metric_row(
            "hf_s",
            t_hf,
            "torch_frontend_s",
            t_ours,
            ">= 5x faster",
            t_hf / t_ours >= 5 and diff <= 1e-4,
            feature_max_abs_diff=diff,
        )
    return rows


BUSY_CODE = """import sys, torch
torch.set_num_threads(int(sys.argv[1]))
x = torch.randn(200_000)
print("ready", flush=True)
while True:
    x.add_(1e-9)
"""


@contextlib.contextmanager
def busy_processes(n: int, threads: int) -> Iterator[None]:
    """``n`` other processes, each adding in place to a 200k-float tensor on ``threads`` threads
    (another torch job's small ops), from when each says it is ready until the block ends."""
    procs = [
        subprocess.Popen([sys.executable, "-c", BUSY_CODE, str(threads)], stdout=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    try:
        for proc in procs:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a busy process exited before starting (status {proc.wait()})")
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def latency(times: Sequence[float]) -> dict[str, float]:
    """Median, 90th percentile and mean of ``times`` (seconds)."""
    ordered = sorted(times)
    return {
        "p50_s": statistics.median(ordered),
        "p90_s": ordered[int(0.9 * (len(ordered) - 1))],
        "mean_s": statistics.fmean(ordered),
    }


def metric_frontend_busy(ctx: BenchContext) -> Rows:
    """The torch frontend on the 10 s clip while two other 2-thread torch processes keep the cores busy:
    as the consumer runs it (one thread, ``w2vlab.runtime._loaders.FRONTEND_THREADS``) and on the benchmark's
    threads, against HF's extractor; alternated, with tail latencies (the collapse is in the tail)."""
    from w2vlab._features import TorchFeatureExtractor
    from w2vlab.export._suite import synthetic_speech
    from w2vlab.export._torchscript import script_module
    from w2vlab.runtime._loaders import FRONTEND_THREADS, intra_op_threads

    frontend = script_module(TorchFeatureExtractor(ctx.config).eval())
    wave = synthetic_speech(10 * SR, seed=10)
    x = torch.from_numpy(wave)[None]

    def consumer() -> None:
        with intra_op_threads(FRONTEND_THREADS):
            frontend(x)

    hf = lambda: ctx.fe(wave, sampling_rate=SR, return_tensors="pt", return_attention_mask=True)  # noqa: E731
    repeats = 15 if ctx.quick else 60
    with torch.inference_mode(), busy_processes(2, ctx.threads):
        hf_t, consumer_t, threaded_t = map(latency, alternated_seconds((hf, consumer, lambda: frontend(x)), repeats))
    return {
        "frontend_busy_10s": metric_row(
            "consumer_p90_s",
            consumer_t["p90_s"],
            "hf_p90_s",
            hf_t["p90_s"],
            "<= 1.0 (p90 while busy)",
            consumer_t["p90_s"] <= hf_t["p90_s"],
            consumer=consumer_t,
            hf=hf_t,
            **{f"threads_{ctx.threads}": threaded_t},
            frontend_threads=FRONTEND_THREADS,
            repeats=repeats,
            competitors=f"2 processes, each x.add_(1e-9) on 200k floats with {ctx.threads} threads",
        )
    }
