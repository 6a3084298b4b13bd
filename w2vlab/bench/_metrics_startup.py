"""Start-up metrics: from a fresh process to a first embedding, through the consumer and the C++ program."""

from __future__ import annotations

import statistics
import time

import numpy as np

from w2vlab._benchrow import metric_row
from w2vlab._contract import MODES
from w2vlab.bench._context import BenchContext, Rows
from w2vlab.bench._procs import run_child_report
from w2vlab.bench._synth import SR


def metric_time_to_first_embedding(ctx: BenchContext) -> Rows:
    """From a fresh ``python`` to one embedding of the 10 s clip: eager (checkpoint + HF extractor)
    against every file of the artifact through the consumer, ``load_artifact(dir, mode, fmt).embed(wave,
    16000)``, with what each consumer process imported.  Both modes: a preprocessed file needs the HF
    extractor (transformers' feature code), a waveform file computes its features inside."""
    wav_path = ctx.work / "clip10s.npy"
    np.save(wav_path, ctx.clip10)
    runs = 1 if ctx.quick else 3
    eager = [
        run_child_report("first_embedding_eager", ctx.ckpt, wav_path, ctx.threads, env=ctx.env) for _ in range(runs)
    ]
    files = [(mode, fmt) for mode in MODES for fmt in ctx.artifact_formats]
    consumer = {
        f"{mode} {fmt}": [
            run_child_report("first_embedding_artifact", ctx.art, mode, fmt, wav_path, ctx.threads, env=ctx.env)
            for _ in range(runs)
        ]
        for mode, fmt in files
    }
    t_eager = statistics.median(c.wall_s for c in eager)
    t_first = {name: statistics.median(c.wall_s for c in children) for name, children in consumer.items()}
    fastest = min(t_first, key=t_first.__getitem__)
    return {
        "time_to_first_embedding": metric_row(
            "fastest_s",
            t_first[fastest],
            "eager_s",
            t_eager,
            "<= 0.5 for the fastest file (meaningful at --size full)",
            t_first[fastest] <= 0.5 * t_eager,
            fastest=fastest,
            seconds=t_first,
            ratios={name: t / t_eager for name, t in t_first.items()},
            peak_rss_bytes={name: max(c.peak_rss_bytes for c in children) for name, children in consumer.items()},
            eager_peak_rss_bytes=max(c.peak_rss_bytes for c in eager),
            consumer="load_artifact(dir, mode, fmt).embed(wave, 16000) in a fresh process",
            eager_modules_loaded=eager[-1].report["modules_loaded"],
            consumer_modules_loaded={
                name: children[-1].report["modules_loaded"] for name, children in consumer.items()
            },
            consumer_heavy_modules={
                name: sorted({m for c in children for m in c.report["heavy_modules"]})
                for name, children in consumer.items()
            },
        )
    }


def metric_cpp_vs_python_first_embedding(ctx: BenchContext) -> Rows:
    """From process start to the embedding of the 10 s clip read from a WAV file, waveform TorchScript
    artifact: the C++ consumer (``build/cpp/w2vlab-embed``, built first if needed) against the Python
    one (``load_artifact(dir, "waveform").embed_file``), alternated, with their parity."""
    import soundfile as sf

    from w2vlab.runtime import _cpp as cpp_consumer

    name, target = "cpp_vs_python_first_embedding_10s", "<= 0.5 with max|diff| <= 1e-5"
    try:
        program = cpp_consumer.build()
    except (FileNotFoundError, cpp_consumer.MissingBuildDependencies) as e:  # say so, measure the rest
        return {name: {"target": target, "met": False, "skipped": str(e).splitlines()[0]}}
    wav, out = ctx.work / "clip10s.wav", ctx.work / "clip10s_python.npy"
    sf.write(wav, ctx.clip10, SR, subtype="FLOAT")
    cpp_s, python_s = [], []
    for _ in range(1 if ctx.quick else 3):
        start = time.perf_counter()
        cpp = cpp_consumer.run(ctx.art, [wav], threads=ctx.threads, program=program)
        cpp_s.append(time.perf_counter() - start)
        if cpp.returncode != 0:
            raise RuntimeError(f"w2vlab-embed failed ({cpp.returncode}): {cpp.stderr[-2000:]}")
        python_s.append(run_child_report("first_embedding_file", ctx.art, wav, out, ctx.threads, env=ctx.env).wall_s)
    diff = float(np.abs(cpp.embeddings[str(wav)] - np.load(out).reshape(-1)).max())
    t_cpp, t_python = statistics.median(cpp_s), statistics.median(python_s)
    return {
        name: metric_row(
            "cpp_s",
            t_cpp,
            "python_s",
            t_python,
            target,
            t_cpp <= 0.5 * t_python and diff <= 1e-5,
            max_abs_diff=diff,
            program_bytes=program.stat().st_size,
        )
    }
