"""Benchmark: speed and memory as ratios measured side by side in one run.

    python -m w2vlab.bench [--size tiny|small|full] [--quick] [--threads 2] [--json OUT]

Prints one JSON object.  Each metric has both sides' measurements (median of several runs
after a warm-up), their ratio, the target and whether it is met, plus the parity of what was
timed: a speed-up that loses parity does not count.  One export (a child process, its peak
RSS measured) writes a real artifact directory with every format (TorchScript, the
``torch.export`` ``.pt2`` and, with the ``[onnx]`` extra, ONNX Runtime fp32 and the dynamic-int8
copy, labelled as such and judged by cosine); every format of it is timed on the same 10 s clip
alternated with eager, and each one's time to a first embedding is measured in a fresh process
going through the consumer, ``load_artifact(dir, "preprocessed", fmt).embed(wave, 16000)``.
The machine this runs on is shared and noisy, so only ratios taken in the same run are
meaningful; none of this is a test.

Layout: one ``metric_*`` function per measurement, each taking the shared
:class:`BenchContext` and returning its JSON rows; :func:`run` calls them in order.  The child
processes are the functions of :mod:`w2vlab.bench_child`, run by :func:`run_child`.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from .bench_child import HWM_MARKER, REPORT_MARKER

logger = logging.getLogger(__name__)

SR = 16000
Rows = dict[str, Any]


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


def paired_seconds(a: Callable[[], Any], b: Callable[[], Any], repeats: int, warmup: int = 3) -> tuple[float, float]:
    """Medians of ``a()`` and ``b()`` called alternately (a, b, a, b, ...) after ``warmup`` pairs.

    On a shared machine the speed drifts by 2x within minutes; alternating makes the drift hit
    both sides alike, so their ratio stays meaningful where two separate medians would not.
    """
    for _ in range(warmup):
        a()
        b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((a, times_a), (b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def metric(a_name: str, a: float, b_name: str, b: float, target: str, met: bool, **extra: Any) -> dict[str, Any]:
    """One row: ``ratio`` is ``a / b``."""
    return {a_name: a, b_name: b, "ratio": a / b if b else float("inf"), "target": target, "met": bool(met), **extra}


def encoder_flops(facts: dict[str, Any], frames: int) -> float:
    """FLOPs of one forward pass over ``frames`` stacked frames (batch 1).

    2·T·(weights of every Linear/Conv1d) + attention: per layer with attention,
    QKᵀ, AV and the relative-key bias each cost 2·T²·(heads·head_size).
    """
    return 2.0 * frames * facts["linear_conv_weights"] + sum(
        3 * 2 * frames**2 * heads * facts["head_size"] for heads in facts["heads"]
    )


def flop_facts(model: torch.nn.Module) -> dict[str, Any]:
    """What :func:`encoder_flops` needs: weights of Linear/Conv1d layers, head size, heads per attention layer."""
    cfg = model.encoder.config
    heads = getattr(cfg, "num_attention_heads_group", None) or [cfg.num_attention_heads] * cfg.num_hidden_layers
    use = getattr(cfg, "use_attention", None) or [True] * cfg.num_hidden_layers
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d)))
    return {"linear_conv_weights": weights, "head_size": cfg.hidden_size // cfg.num_attention_heads,
            "heads": [h for h, u in zip(heads, use) if u]}


def best_gemm_flops(threads: int, size: int = 1024, repeats: int = 5) -> dict[str, float]:
    """Dense GEMM FLOP/s on this machine right now: torch.mm and numpy (BLAS)."""
    a, b = torch.randn(size, size * 4), torch.randn(size * 4, size)
    flops = 2 * size * size * size * 4
    out = {"torch_mm": flops / median_seconds(lambda: torch.mm(a, b), repeats)}
    an, bn = a.numpy(), b.numpy()
    out["numpy"] = flops / median_seconds(lambda: an @ bn, repeats)
    return out


# --------------------------------------------------------------------------- child processes


class ChildRun(NamedTuple):
    wall_s: float  # from spawning the interpreter to its exit
    peak_rss_bytes: float  # the child's own VmHWM
    report: dict[str, Any]  # what the child function returned


def child_env(threads: int) -> dict[str, str]:
    """This environment with ``threads`` OpenMP/MKL threads, and this copy of w2vlab first on the path."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONPATH": path}


def run_child_report(name: str, *args: Any, env: dict[str, str]) -> ChildRun:
    """Run :mod:`w2vlab.bench_child` function ``name`` with ``args`` in a fresh interpreter.

    The peak is the child's own ``VmHWM`` (per address space, so it starts at zero at exec);
    ``ru_maxrss`` would also count the forked copy of this process before exec.
    """
    command = [sys.executable, "-m", "w2vlab.bench_child", name, *map(str, args)]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(f"benchmark child failed ({result.returncode}): {' '.join(command[3:])}\n"
                           f"{result.stderr[-2000:]}")
    report = json.loads(result.stdout.rsplit(f"{REPORT_MARKER} ", 1)[1].splitlines()[0])
    kib = int(result.stdout.rsplit(f"{HWM_MARKER} ", 1)[1].split()[0])
    return ChildRun(wall, kib * 1024.0, report)


def run_child(name: str, *args: Any, env: dict[str, str]) -> tuple[float, float]:
    """:func:`run_child_report` without the report: (wall seconds, the child's peak RSS in bytes)."""
    child = run_child_report(name, *args, env=env)
    return child.wall_s, child.peak_rss_bytes


# --------------------------------------------------------------------------- shared context


@dataclass
class BenchContext:
    """What every metric shares: settings, paths, and (loaded on first use, after the export)
    the eager model, the HF extractor, the TorchScript artifact and the 10 s clip."""

    size: str
    quick: bool
    threads: int
    work: Path

    @property
    def repeats(self) -> int:
        return 3 if self.quick else 7

    @property
    def ckpt(self) -> Path:
        return self.work / f"demo_{self.size}"

    @property
    def art(self) -> Path:
        return self.work / f"artifact_{self.size}"

    @cached_property
    def env(self) -> dict[str, str]:
        return child_env(self.threads)

    @cached_property
    def loaded(self) -> Any:
        from .checkpoint import load_speaker_encoder

        return load_speaker_encoder(self.ckpt)

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    @cached_property
    def fe(self) -> Any:
        from .checkpoint import feature_extractor_for

        return feature_extractor_for(self.loaded)

    @cached_property
    def config(self) -> Any:
        from .features import FeatureConfig

        return FeatureConfig.from_extractor(self.fe)

    @cached_property
    def artifact_formats(self) -> list[str]:
        """The formats the artifact has for preprocessed mode, in contract order."""
        from .contract import FORMATS, format_entries, read_metadata

        present = format_entries(read_metadata(self.art), "preprocessed")
        return [fmt for fmt in FORMATS if fmt in present]

    def file(self, fmt: str, mode: str = "preprocessed") -> Path:
        from .contract import FILES

        return self.art / FILES[fmt, mode]

    def load(self, fmt: str, mode: str = "preprocessed") -> Callable[..., torch.Tensor]:
        from .loaders import load_format

        return load_format(self.file(fmt, mode), fmt, mode, self.config, threads=self.threads)

    @cached_property
    def pre(self) -> Callable[..., torch.Tensor]:
        """The preprocessed-mode TorchScript artifact."""
        return self.load("torchscript")

    @cached_property
    def clip10(self) -> np.ndarray:
        from .suite import synthetic_speech

        return synthetic_speech(10 * SR, seed=3)

    @cached_property
    def feats(self) -> torch.Tensor:
        """The 10 s clip's HF features, valid rows: [1, T, 160]."""
        out = self.fe(self.clip10, sampling_rate=SR, return_tensors="pt", return_attention_mask=True)
        return out["input_features"][:, out["attention_mask"][0].bool()]

    @cached_property
    def formats(self) -> dict[str, dict[str, Any]]:
        """Every format's row on the 10 s clip (:func:`time_formats`), measured once on first use."""
        return time_formats(self)


def make_context(size: str, quick: bool, threads: int, work: Path) -> BenchContext:
    """The context, with the demo checkpoint of ``size`` written into ``work``."""
    from .demo import write_demo_checkpoint

    ctx = BenchContext(size, quick, threads, Path(work))
    write_demo_checkpoint(ctx.ckpt, size=size, overwrite=True)
    return ctx


def file_bytes(path: Path) -> int:
    """Size of ``path`` plus its ONNX external data file, if any."""
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def time_format(ctx: BenchContext, fmt: str, runner: Callable[..., torch.Tensor]) -> dict[str, Any]:
    """``runner``'s latency on the 10 s clip alternated with eager's, its parity with eager, its size."""
    from .parity import compare

    with torch.inference_mode():
        t_eager, t = paired_seconds(lambda: ctx.model(ctx.feats), lambda: runner(ctx.feats), ctx.repeats)
        parity = compare(ctx.model(ctx.feats), runner(ctx.feats))
    return {"s": t, "eager_s": t_eager, "ratio_vs_eager": t / t_eager, "cosine": parity.worst_cosine,
            "max_abs_diff": parity.worst_max_abs_diff, "bytes": file_bytes(ctx.file(fmt))}


def time_formats(ctx: BenchContext) -> dict[str, dict[str, Any]]:
    """:func:`time_format` for every preprocessed-mode file of the artifact, one loaded at a time."""
    rows = {}
    for fmt in ctx.artifact_formats:
        gc.collect()
        runner = ctx.pre if fmt == "torchscript" else ctx.load(fmt)
        rows[fmt] = time_format(ctx, fmt, runner)
        del runner
    if "onnx" not in rows:
        logger.warning("the [onnx] extra is not installed: no ONNX rows")
    return rows


# --------------------------------------------------------------------------- metrics


def metric_export_peak_rss(ctx: BenchContext) -> Rows:
    """Peak RSS of exporting the checkpoint (both modes, every format) against its weights on disk."""
    weight_bytes = sum(p.stat().st_size for p in ctx.ckpt.glob("*.safetensors"))
    child = run_child_report("export_artifact", ctx.ckpt, ctx.art, ctx.threads, env=ctx.env)
    return {"export_peak_rss": metric(
        "peak_rss_bytes", child.peak_rss_bytes, "weight_bytes", weight_bytes, "<= 1.2 (meaningful at --size full)",
        child.peak_rss_bytes <= 1.2 * weight_bytes, export_wall_s=child.wall_s, formats=child.report["formats"])}


def artifact_sizes(ctx: BenchContext) -> dict[str, int]:
    """Bytes of each TorchScript archive of the artifact."""
    return {p.name: p.stat().st_size for p in ctx.art.glob("*.pt")}


def metric_frontend_vs_hf(ctx: BenchContext) -> Rows:
    """The scripted torch frontend against the HF extractor on 10 s and 60 s clips."""
    from .features import TorchFeatureExtractor
    from .suite import synthetic_speech
    from .torchscript import script_module

    frontend = script_module(TorchFeatureExtractor(ctx.config).eval())
    rows = {}
    for seconds in (10, 60):
        wave = synthetic_speech(seconds * SR, seed=seconds)
        hf = lambda: ctx.fe(wave, sampling_rate=SR, return_tensors="pt", return_attention_mask=True)  # noqa: E731
        ours = lambda: frontend(torch.from_numpy(wave)[None])  # noqa: E731
        with torch.inference_mode():
            t_hf, t_ours = paired_seconds(hf, ours, ctx.repeats)
            ref, got = hf(), ours()
        diff = float((ref["input_features"] - got[0]).abs().max())
        rows[f"frontend_vs_hf_{seconds}s"] = metric(
            "hf_s", t_hf, "torch_frontend_s", t_ours, ">= 5x faster", t_hf / t_ours >= 5 and diff <= 1e-4,
            feature_max_abs_diff=diff)
    return rows


def metric_waveform_vs_hf_plus_eager(ctx: BenchContext) -> Rows:
    """The waveform-mode TorchScript artifact against HF extractor + eager model on the 10 s clip."""
    from .parity import compare

    wav = ctx.load("torchscript", "waveform")
    wave = torch.from_numpy(ctx.clip10)[None]

    def hf_then_eager():
        o = ctx.fe(ctx.clip10, sampling_rate=SR, return_tensors="pt", return_attention_mask=True)
        return ctx.model(o["input_features"], o["attention_mask"])

    with torch.inference_mode():
        t_hf_eager, t_wav = paired_seconds(hf_then_eager, lambda: wav(wave), ctx.repeats)
        parity = compare(hf_then_eager(), wav(wave))
    return {"waveform_artifact_vs_hf_plus_eager_10s": metric(
        "waveform_artifact_s", t_wav, "hf_plus_eager_s", t_hf_eager, "<= 1.0 with cosine >= 0.99999",
        t_wav <= t_hf_eager and parity.worst_cosine >= 0.99999, max_abs_diff=parity.worst_max_abs_diff)}


def metric_torchscript_vs_eager(ctx: BenchContext) -> Rows:
    """The preprocessed TorchScript artifact against the eager model on the 10 s clip's features."""
    row = ctx.formats["torchscript"]
    return {"torchscript_vs_eager_10s": metric(
        "torchscript_s", row["s"], "eager_s", row["eager_s"], "<= 1.0 with max|diff| 0",
        row["s"] <= row["eager_s"] and row["max_abs_diff"] == 0.0, max_abs_diff=row["max_abs_diff"])}


def metric_formats_vs_eager(ctx: BenchContext) -> Rows:
    """Every format of the artifact against eager on the same clip, each held to its own parity bounds."""
    from .parity import format_bounds

    within = {fmt: row["cosine"] >= format_bounds(fmt, "preprocessed").min_cosine
              and row["max_abs_diff"] <= format_bounds(fmt, "preprocessed").max_abs_diff
              for fmt, row in ctx.formats.items()}
    return {"formats_vs_eager_10s": {
        "formats": ctx.formats, "timing": "each format alternated with eager (paired medians)",
        "target": "each within its format's parity bounds", "met": all(within.values())}}


def fastest_fp32(formats: dict[str, dict[str, Any]]) -> str:
    """The fp32 format with the lowest latency relative to eager."""
    return min((f for f in formats if f != "onnx-int8"), key=lambda f: formats[f]["ratio_vs_eager"])


def metric_fastest_artifact_vs_eager(ctx: BenchContext) -> Rows:
    """The fastest format (int8 included) against eager, and the fastest fp32 one's ratio."""
    formats = ctx.formats
    fastest = min(formats, key=lambda f: formats[f]["ratio_vs_eager"])
    fp32 = fastest_fp32(formats)
    row = formats[fastest]
    return {"fastest_artifact_vs_eager_10s": metric(
        "fastest_s", row["s"], "eager_s", row["eager_s"], "<= 0.5 (int8: cosine >= 0.999)",
        row["ratio_vs_eager"] <= 0.5 and row["cosine"] >= 0.999, format=fastest,
        fastest_fp32=fp32, fastest_fp32_ratio=formats[fp32]["ratio_vs_eager"])}


def metric_encoder_flops_fraction(ctx: BenchContext) -> Rows:
    """FLOP/s each format (and eager) reaches on the 10 s clip, over the best GEMM measured now."""
    formats = ctx.formats
    gemm = best_gemm_flops(ctx.threads, repeats=ctx.repeats)
    flops = encoder_flops(flop_facts(ctx.model), ctx.feats.shape[1])
    best = max(gemm.values())
    achieved = {"eager": flops / statistics.median(row["eager_s"] for row in formats.values()),
                **{f: flops / row["s"] for f, row in formats.items()}}
    fp32 = fastest_fp32(formats)
    return {"encoder_flops_fraction": {
        "gflop_per_clip": flops / 1e9, "best_gemm_gflops": {k: v / 1e9 for k, v in gemm.items()},
        "achieved_gflops": {k: v / 1e9 for k, v in achieved.items()},
        "fraction_of_best": {k: v / best for k, v in achieved.items()},
        "note": "fp32 FLOPs over the best fp32 GEMM; the int8 copy's fraction is not comparable (int8 GEMMs)",
        "target": ">= 0.8 for the fastest fp32 artifact", "fastest_fp32": fp32, "met": achieved[fp32] / best >= 0.8}}


def metric_time_to_first_embedding(ctx: BenchContext) -> Rows:
    """From a fresh ``python`` to one embedding of the 10 s clip: eager (checkpoint + HF extractor)
    against each format through the consumer, ``load_artifact(...).embed(wave, 16000)``, with
    what the consumer process imported."""
    wav_path = ctx.work / "clip10s.npy"
    np.save(wav_path, ctx.clip10)
    runs = 1 if ctx.quick else 3
    eager = [run_child_report("first_embedding_eager", ctx.ckpt, wav_path, ctx.threads, env=ctx.env)
             for _ in range(runs)]
    consumer = {fmt: [run_child_report("first_embedding_artifact", ctx.art, fmt, wav_path, ctx.threads, env=ctx.env)
                      for _ in range(runs)] for fmt in ctx.artifact_formats}
    t_eager = statistics.median(c.wall_s for c in eager)
    t_first = {fmt: statistics.median(c.wall_s for c in children) for fmt, children in consumer.items()}
    return {"time_to_first_embedding": metric(
        "torchscript_s", t_first["torchscript"], "eager_s", t_eager, "<= 1.0", t_first["torchscript"] <= t_eager,
        **{f"{fmt}_s": t for fmt, t in t_first.items() if fmt != "torchscript"},
        consumer="load_artifact(dir, 'preprocessed', fmt).embed(wave, 16000) in a fresh process",
        eager_modules_loaded=eager[-1].report["modules_loaded"],
        consumer_modules_loaded={fmt: children[-1].report["modules_loaded"] for fmt, children in consumer.items()},
        consumer_heavy_modules={fmt: sorted({m for c in children for m in c.report["heavy_modules"]})
                                for fmt, children in consumer.items()})}


def metric_padded_batch(ctx: BenchContext) -> Rows:
    """A padded batch of 8 clips (2-10 s) through the TorchScript artifact against the same clips one by one."""
    from .parity import compare
    from .suite import synthetic_speech

    waves = [synthetic_speech(int(s * SR), seed=i) for i, s in enumerate(np.linspace(2, 10, 8))]
    batch = ctx.fe(waves, sampling_rate=SR, padding=True, return_tensors="pt", return_attention_mask=True)
    singles = [ctx.fe(w, sampling_rate=SR, return_tensors="pt", return_attention_mask=True) for w in waves]
    singles = [s["input_features"][:, s["attention_mask"][0].bool()] for s in singles]
    pre = ctx.pre
    with torch.inference_mode():
        t_batch, t_single = paired_seconds(lambda: pre(batch["input_features"], batch["attention_mask"]),
                                           lambda: [pre(s) for s in singles], ctx.repeats)
        parity = compare(torch.cat([pre(s) for s in singles]), pre(batch["input_features"], batch["attention_mask"]))
    return {"padded_batch_8_vs_one_by_one": metric(
        "one_by_one_s", t_single, "batch_s", t_batch, ">= 1.5x throughput with max|diff| <= 1e-5",
        t_single / t_batch >= 1.5 and parity.worst_max_abs_diff <= 1e-5, max_abs_diff=parity.worst_max_abs_diff)}


# after the export, in this order (also the order of the JSON's metrics)
METRICS: tuple[Callable[[BenchContext], Rows], ...] = (
    metric_frontend_vs_hf, metric_waveform_vs_hf_plus_eager, metric_torchscript_vs_eager, metric_formats_vs_eager,
    metric_fastest_artifact_vs_eager, metric_encoder_flops_fraction, metric_time_to_first_embedding,
    metric_padded_batch,
)


def run(size: str = "tiny", quick: bool = False, threads: int = 2, workdir: str | Path | None = None) -> dict[str, Any]:
    """Measure everything for the demo model of ``size``; returns the JSON-able result.

    Checkpoints and artifacts go to ``workdir`` (kept), else to a temporary directory that is
    removed afterwards (at full size, every format of both modes: several times the weights' 2.3 GB).
    """
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="w2vlab-bench-") as tmp:
            return run(size, quick, threads, tmp)
    torch.set_num_threads(threads)
    ctx = make_context(size, quick, threads, Path(workdir))
    result: dict[str, Any] = {
        "size": size, "quick": quick, "threads": threads, "repeats": ctx.repeats,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "metrics": metric_export_peak_rss(ctx),
    }
    result["artifact_sizes"] = artifact_sizes(ctx)
    for measure in METRICS:
        logger.info("bench: %s", measure.__name__)
        result["metrics"].update(measure(ctx))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m w2vlab.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "small", "full"), default="tiny")
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a smoke run for CI")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run(args.size, args.quick, args.threads)
    text = json.dumps(result, indent=2)
    sys.stdout.write(text + "\n")
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
