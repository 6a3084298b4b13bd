"""The allocator metric: eager, TorchScript and ONNX with and without :func:`w2vlab._allocator.keep_freed_memory`."""

from __future__ import annotations

import statistics

from w2vlab._benchrow import metric_row
from w2vlab.bench._context import BenchContext, Rows
from w2vlab.bench._procs import lockstep


def metric_allocator(ctx: BenchContext) -> Rows:
    """Eager, TorchScript and ONNX on the 10 s clip in two processes, one with
    :func:`w2vlab._allocator.keep_freed_memory` and one with glibc's defaults, run in lockstep (a round
    in one, then a round in the other): the setting's effect on each, per-round paired, with minor
    page faults per call, and the fastest fp32 file's ratio against both eagers."""
    from w2vlab.export._precision import save_inputs

    inputs = ctx.work / "allocator_inputs.npz"
    save_inputs(inputs, {"clip10": ctx.feats})
    ctx.release_models()  # its two children hold three models each: 16 GB at full size, on a 24 GB machine
    settings = {"default": 0, "keep_freed_memory": 1}
    children = {
        name: ["allocator_runs", ctx.ckpt, ctx.art, inputs, ctx.threads, keep] for name, keep in settings.items()
    }
    rounds, reports = lockstep(children, ctx.env, ctx.repeats + 2, 2, ctx.work / "allocator_children.log")
    runners = list(rounds["default"][0])
    med = {name: {r: statistics.median(rnd[r][0] for rnd in rounds[name]) for r in runners} for name in settings}
    faults = {name: {r: statistics.median(rnd[r][1] for rnd in rounds[name]) for r in runners} for name in settings}
    paired = {
        r: statistics.median(k[r][0] / d[r][0] for d, k in zip(rounds["default"], rounds["keep_freed_memory"]))
        for r in runners
    }
    vs_eager = {name: {r: med[name][r] / med[name]["eager"] for r in runners if r != "eager"} for name in settings}
    return {
        "allocator_eager_10s": metric_row(
            "eager_keep_s",
            med["keep_freed_memory"]["eager"],
            "eager_default_s",
            med["default"]["eager"],
            "< 1 (the setting the consumers use)",
            paired["eager"] < 1,
            seconds=med,
            minor_faults_per_call=faults,
            keep_vs_default_paired=paired,
            ratio_vs_eager_same_setting=vs_eager,
            rounds=len(rounds["default"]),
            applied={name: report["keep_freed_memory"] for name, report in reports.items()},
            timing="two processes, one per setting, alternating rounds; each round runs every runner once",
        )
    }
