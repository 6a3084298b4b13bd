"""Benchmark: speed and memory as ratios measured side by side in one run.

    python -m w2vlab.bench [--size tiny|small|full] [--quick] [--threads 2] [--json OUT] [--only METRIC[,METRIC]]

Prints one JSON object.  Each metric has both sides' measurements (median of several runs
after a warm-up), their ratio, the target and whether it is met, plus the parity of what was
timed: a speed-up that loses parity does not count.  One export (a child process, its peak
RSS measured) writes a real artifact directory with every format (TorchScript, the
``torch.export`` ``.pt2`` and, with the ``[onnx]`` extra, ONNX Runtime fp32 and the dynamic-int8
copy, labelled as such and judged by cosine); every format of it is timed on the same 10 s clip
alternated with eager, and each one's time to a first embedding is measured in a fresh process
going through the consumer, ``load_artifact(dir, "preprocessed", fmt).embed(wave, 16000)``.
The corpus metrics run ``embed_corpus`` (the artifact's preprocessed TorchScript file) on a
synthetic corpus of 16 kHz WAV files of 1-12 s written into the work directory: whole pipeline
against the model alone on the same batches, bucketed against one clip per batch, the Ray Data
engine against the local one, and the peak RSS of a corpus ten times larger.
The machine this runs on is shared and noisy, so only ratios taken in the same run are
meaningful; none of this is a test.

Layout: one ``metric_*`` function per measurement, each taking the shared
:class:`BenchContext` and returning its JSON rows; :func:`run` calls them in order.  The child
processes are the functions of :mod:`w2vlab.bench._child`, run by :func:`run_child`.
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from w2vlab._allocator import keep_freed_memory, trim
from w2vlab._atomic import write_json
from w2vlab._contract import MODES
from w2vlab.bench._child import HWM_MARKER, REPORT_MARKER
from w2vlab.bench._timing import alternated_seconds, median_seconds, paired_seconds

logger = logging.getLogger(__name__)

SR = 16000
Rows = dict[str, Any]


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
    return {
        "linear_conv_weights": weights,
        "head_size": cfg.hidden_size // cfg.num_attention_heads,
        "heads": [h for h, u in zip(heads, use) if u],
    }


# --------------------------------------------------------------------------- child processes


class ChildRun(NamedTuple):
    wall_s: float  # from spawning the interpreter to its exit
    peak_rss_bytes: float  # the child's own VmHWM
    report: dict[str, Any]  # what the child function returned


def child_env(threads: int) -> dict[str, str]:
    """This environment with ``threads`` OpenMP/MKL threads, and this copy of w2vlab first on the path."""
    root = str(Path(__file__).resolve().parents[2])
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
        from w2vlab.model._checkpoint import load_speaker_encoder

        return load_speaker_encoder(self.ckpt)

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    @cached_property
    def fe(self) -> Any:
        from w2vlab.model._checkpoint import feature_extractor_for

        return feature_extractor_for(self.loaded)

    @cached_property
    def config(self) -> Any:
        from w2vlab._features import FeatureConfig

        return FeatureConfig.from_extractor(self.fe)

    @cached_property
    def artifact_formats(self) -> list[str]:
        """The formats the artifact has for preprocessed mode, in contract order."""
        from w2vlab._contract import FORMATS, format_entries, read_metadata

        present = format_entries(read_metadata(self.art), "preprocessed")
        return [fmt for fmt in FORMATS if fmt in present]

    def file(self, fmt: str, mode: str = "preprocessed") -> Path:
        from w2vlab._contract import FILES

        return self.art / FILES[fmt, mode]

    def load(self, fmt: str, mode: str = "preprocessed") -> Callable[..., torch.Tensor]:
        from w2vlab.runtime._loaders import load_format

        return load_format(self.file(fmt, mode), fmt, mode, self.config, threads=self.threads)

    @cached_property
    def pre(self) -> Callable[..., torch.Tensor]:
        """The preprocessed-mode TorchScript artifact."""
        return self.load("torchscript")

    def release_models(self) -> None:
        """Drop the eager model and the TorchScript artifact this process holds (reloaded on next use)
        and hand their memory back: before a metric whose children hold several full-size models."""
        for name in ("loaded", "pre"):
            self.__dict__.pop(name, None)
        trim()

    @cached_property
    def clip10(self) -> np.ndarray:
        from w2vlab.export._suite import synthetic_speech

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

    @property
    def corpus_files(self) -> int:
        """Clips in the synthetic corpus of the corpus metrics (10x that many short ones for the RSS one)."""
        return 24 if self.quick else 48

    @cached_property
    def corpus(self) -> Path:
        """wav.scp of the corpus metrics' clips: :attr:`corpus_files` WAV files of 1-12 s."""
        return write_corpus(self.work / "corpus", corpus_lengths(self.corpus_files, 1.0, 12.0))

    @cached_property
    def corpus_seconds(self) -> float:
        """Audio seconds in :attr:`corpus` (what every corpus run embeds)."""
        from w2vlab.corpus._embed import clip_seconds, read_source

        return sum(clip_seconds(item) for item in read_source(self.corpus))

    @cached_property
    def embedder(self) -> Any:
        """The artifact's preprocessed TorchScript file as a corpus embedder."""
        from w2vlab.corpus._embed import ArtifactEmbedder

        return ArtifactEmbedder(self.art, "preprocessed", "torchscript")


def make_context(size: str, quick: bool, threads: int, work: Path, reuse: bool = False) -> BenchContext:
    """The context, with the demo checkpoint of ``size`` written into ``work``; with ``reuse``, the
    checkpoint and artifact an earlier run left in ``work`` (``ValueError`` if either is missing)."""
    from w2vlab.model._demo import write_demo_checkpoint

    ctx = BenchContext(size, quick, threads, Path(work))
    if reuse:
        check_reusable(ctx)
        return ctx
    write_demo_checkpoint(ctx.ckpt, size=size, overwrite=True)
    return ctx


def check_reusable(ctx: BenchContext) -> None:
    """``ValueError`` naming what is missing unless an earlier run left its checkpoint and artifact in ``ctx.work``."""
    from w2vlab._contract import METADATA_FILE

    missing = [str(p) for p in (ctx.ckpt, ctx.art / METADATA_FILE) if not p.exists()]
    if missing:
        raise ValueError(
            f"reusing {ctx.work} needs the checkpoint and artifact of an earlier --size {ctx.size} run "
            f"there; missing: {', '.join(missing)}"
        )


def file_bytes(path: Path) -> int:
    """Size of ``path`` plus its ONNX external data file, if any."""
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def time_format(ctx: BenchContext, fmt: str, runner: Callable[..., torch.Tensor]) -> dict[str, Any]:
    """``runner``'s latency on the 10 s clip alternated with eager's, its parity with eager, its size."""
    from w2vlab._parity import compare

    with torch.inference_mode():
        t_eager, t = paired_seconds(lambda: ctx.model(ctx.feats), lambda: runner(ctx.feats), ctx.repeats)
        parity = compare(ctx.model(ctx.feats), runner(ctx.feats))
    return {
        "s": t,
        "eager_s": t_eager,
        "ratio_vs_eager": t / t_eager,
        "cosine": parity.worst_cosine,
        "max_abs_diff": parity.worst_max_abs_diff,
        "bytes": file_bytes(ctx.file(fmt)),
    }


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
    return {
        "export_peak_rss": metric(
            "peak_rss_bytes",
            child.peak_rss_bytes,
            "weight_bytes",
            weight_bytes,
            "<= 1.2 (meaningful at --size full)",
            child.peak_rss_bytes <= 1.2 * weight_bytes,
            export_wall_s=child.wall_s,
            formats=child.report["formats"],
        )
    }


def artifact_sizes(ctx: BenchContext) -> dict[str, int]:
    """Bytes of each TorchScript archive of the artifact."""
    return {p.name: p.stat().st_size for p in ctx.art.glob("*.pt")}


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
        rows[f"frontend_vs_hf_{seconds}s"] = metric(
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
        "frontend_busy_10s": metric(
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


def metric_waveform_vs_hf_plus_eager(ctx: BenchContext) -> Rows:
    """The waveform-mode TorchScript artifact against HF extractor + eager model on the 10 s clip."""
    from w2vlab._parity import compare

    wav = ctx.load("torchscript", "waveform")
    wave = torch.from_numpy(ctx.clip10)[None]

    def hf_then_eager():
        o = ctx.fe(ctx.clip10, sampling_rate=SR, return_tensors="pt", return_attention_mask=True)
        return ctx.model(o["input_features"], o["attention_mask"])

    with torch.inference_mode():
        t_hf_eager, t_wav = paired_seconds(hf_then_eager, lambda: wav(wave), ctx.repeats)
        parity = compare(hf_then_eager(), wav(wave))
    return {
        "waveform_artifact_vs_hf_plus_eager_10s": metric(
            "waveform_artifact_s",
            t_wav,
            "hf_plus_eager_s",
            t_hf_eager,
            "<= 1.0 with cosine >= 0.99999",
            t_wav <= t_hf_eager and parity.worst_cosine >= 0.99999,
            max_abs_diff=parity.worst_max_abs_diff,
        )
    }


def metric_torchscript_vs_eager(ctx: BenchContext) -> Rows:
    """The preprocessed TorchScript artifact against the eager model on the 10 s clip's features."""
    row = ctx.formats["torchscript"]
    return {
        "torchscript_vs_eager_10s": metric(
            "torchscript_s",
            row["s"],
            "eager_s",
            row["eager_s"],
            "<= 1.0 with max|diff| 0",
            row["s"] <= row["eager_s"] and row["max_abs_diff"] == 0.0,
            max_abs_diff=row["max_abs_diff"],
        )
    }


def metric_formats_vs_eager(ctx: BenchContext) -> Rows:
    """Every format of the artifact against eager on the same clip, each held to its own parity bounds."""
    from w2vlab._parity import format_bounds

    within = {
        fmt: row["cosine"] >= format_bounds(fmt, "preprocessed").min_cosine
        and row["max_abs_diff"] <= format_bounds(fmt, "preprocessed").max_abs_diff
        for fmt, row in ctx.formats.items()
    }
    return {
        "formats_vs_eager_10s": {
            "formats": ctx.formats,
            "timing": "each format alternated with eager (paired medians)",
            "target": "each within its format's parity bounds",
            "met": all(within.values()),
        }
    }


def fastest_fp32(formats: dict[str, dict[str, Any]]) -> str:
    """The fp32 format with the lowest latency relative to eager."""
    return min((f for f in formats if f != "onnx-int8"), key=lambda f: formats[f]["ratio_vs_eager"])


def metric_onnx_rewrites(ctx: BenchContext) -> Rows:
    """The artifact's ONNX files (captured with :func:`w2vlab.export._rewrites.faster_blocks`) against ONNX
    files of the stock model exported here, fp32 and int8, alternated with eager on the 10 s clip."""
    from w2vlab._contract import onnx_available

    if not onnx_available():
        return {"onnx_rewrites_10s": {"skipped": "the [onnx] extra is not installed"}}
    from w2vlab._parity import compare
    from w2vlab.export._formats import capture, export_onnx
    from w2vlab.export._int8 import quantize_onnx
    from w2vlab.runtime._loaders import load_format

    stock = {"onnx": ctx.work / "stock.onnx", "onnx-int8": ctx.work / "stock_int8.onnx"}
    start = time.perf_counter()
    export_onnx(capture(ctx.model, "preprocessed", ctx.config), "preprocessed", ctx.config, stock["onnx"])
    quantize_onnx(stock["onnx"], stock["onnx-int8"])
    build_s = time.perf_counter() - start
    runners = {"eager": ctx.model}
    for fmt, path in stock.items():
        runners[f"{fmt}_stock"] = load_format(path, fmt, "preprocessed", ctx.config, threads=ctx.threads)
        runners[fmt] = ctx.load(fmt)
    with torch.inference_mode():
        times = alternated_seconds([lambda run=run: run(ctx.feats) for run in runners.values()], ctx.repeats)
        want = ctx.model(ctx.feats)
        rows = {}
        for (name, run), t in zip(runners.items(), times):
            parity = compare(want, run(ctx.feats))
            rows[name] = {
                "s": statistics.median(t),
                "cosine": parity.worst_cosine,
                "max_abs_diff": parity.worst_max_abs_diff,
            }
    for row in rows.values():
        row["ratio_vs_eager"] = row["s"] / rows["eager"]["s"]
    fp32, int8 = (rows[fmt]["s"] / rows[f"{fmt}_stock"]["s"] for fmt in stock)
    return {
        "onnx_rewrites_10s": metric(
            "onnx_s",
            rows["onnx"]["s"],
            "onnx_stock_s",
            rows["onnx_stock"]["s"],
            "< 1.0, fp32 and int8 alike",
            fp32 < 1 and int8 < 1,
            int8_ratio=int8,
            runs=rows,
            stock_build_s=build_s,
        )
    }


# --------------------------------------------------------------------------- reduced precision

TRIAL_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "corpus"  # the corpus notebook's trials


def gemm_ceilings(rows: int, inner: int, outer: int, threads: int, repeats: int = 5) -> dict[str, float]:
    """FLOP/s of one ``[rows, inner] x [inner, outer]`` GEMM, the model's feed-forward shape: fp32 in
    ``torch.mm``, numpy (BLAS) and ONNX Runtime's ``MatMul`` (with the ``[onnx]`` extra), ``fp32``
    being the best of them; bf16 (``torch.mm``); int8 (``torch._int_mm``, int32 accumulation)."""
    a, b = torch.randn(rows, inner), torch.randn(inner, outer)
    flops = 2.0 * rows * inner * outer
    an, bn = a.numpy(), b.numpy()
    out = {
        "fp32_torch": flops / median_seconds(lambda: torch.mm(a, b), repeats),
        "fp32_numpy": flops / median_seconds(lambda: an @ bn, repeats),
    }
    session = onnx_matmul(bn, threads)
    if session is not None:
        out["fp32_onnxruntime"] = flops / median_seconds(lambda: session.run(None, {"a": an}), repeats)
    out["fp32"] = max(out.values())
    ab, bb = a.bfloat16(), b.bfloat16()
    out["bf16"] = flops / median_seconds(lambda: torch.mm(ab, bb), repeats)
    rows8 = max(rows, 17)  # _int_mm needs more than 16 rows
    a8 = torch.randint(-128, 127, (rows8, inner), dtype=torch.int8)
    b8 = torch.randint(-128, 127, (inner, outer), dtype=torch.int8)
    try:
        out["int8"] = 2.0 * rows8 * inner * outer / median_seconds(lambda: torch._int_mm(a8, b8), repeats)
    except RuntimeError as e:  # shapes or a build without the int8 kernel
        out["int8_error"] = str(e).splitlines()[0]
    return out


def onnx_matmul(b: np.ndarray, threads: int) -> Any:
    """An ONNX Runtime session computing ``a @ b`` (``b`` a constant, as the model's weights are), or
    None without the ``[onnx]`` extra."""
    from w2vlab._contract import onnx_available

    if not onnx_available():
        return None
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, b.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(b, "b")],
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(
        helper.make_model(graph).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def onnx_op_profile(path: Path, feats: torch.Tensor, threads: int, runs: int, work: Path) -> dict[str, Any]:
    """ONNX Runtime's own profile of the preprocessed ONNX file at ``path`` on ``feats`` ``[1, T, 160]``:
    kernel seconds per call by op type (after one warm-up call), and the calls' wall seconds."""
    from w2vlab.runtime._loaders import onnx_session

    session = onnx_session(path, threads, profile_prefix=str(work / "onnx_profile"))
    feed = {"input_features": feats.numpy(), "attention_mask": np.ones(feats.shape[:2], np.int64)}
    for _ in range(runs + 1):
        session.run(None, feed)
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    calls = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    after_warmup = calls[0]["ts"] + calls[0]["dur"]
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= after_warmup:
            op = e.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + e["dur"] / 1e6 / runs
    by_op = dict(sorted(by_op.items(), key=lambda kv: -kv[1]))  # slowest op type first
    kernel_s = sum(by_op.values())
    return {
        "call_s": statistics.median(e["dur"] / 1e6 for e in calls[1:]),
        "kernel_s": kernel_s,
        "by_op_s": by_op,
        "share": {op: s / kernel_s for op, s in by_op.items()},
    }


def ceiling_for(runner: str) -> str:
    """Which of :func:`gemm_ceilings`' entries bounds ``runner``'s GEMMs."""
    return "int8" if "int8" in runner else "bf16" if "bf16" in runner else "fp32"


def precision_inputs(ctx: BenchContext) -> tuple[dict[str, torch.Tensor], dict[str, int], Any]:
    """HF features (valid rows, ``[1, T, 160]``) of the 10 s clip, the quick suite's clips and, in a
    checkout, the corpus notebook's trial utterances (``utt:<key>``); each one's samples; the trials
    (None without the checkout's ``tests/data``)."""
    from w2vlab.export._suite import QUICK_LENGTHS, synthetic_speech

    waves = {"clip10": ctx.clip10, **{f"synth_{n}": synthetic_speech(n, seed=i) for i, n in enumerate(QUICK_LENGTHS)}}
    trials = None
    if (TRIAL_DIR / "trials.txt").exists():
        from w2vlab._audio import prepare_waveform
        from w2vlab.corpus._embed import read_clip, read_source
        from w2vlab.corpus._trials import read_trials

        trials = read_trials(TRIAL_DIR / "trials.txt")
        waves.update(
            {f"utt:{item.key}": prepare_waveform(*read_clip(item)) for item in read_source(TRIAL_DIR / "wav.scp")}
        )
    feats = {}
    for name, wave in waves.items():
        out = ctx.fe(wave, sampling_rate=SR, return_tensors="pt", return_attention_mask=True)
        feats[name] = out["input_features"][:, out["attention_mask"][0].bool()]
    return feats, {name: len(wave) for name, wave in waves.items()}, trials


def precision_quality(
    ref: dict[str, np.ndarray], cand: dict[str, np.ndarray], samples: dict[str, int], trials: Any
) -> dict[str, Any]:
    """Parity on the synthetic clips (int8's bounds, short clips included) and flipped trial decisions."""
    from w2vlab._parity import INT8_BOUNDS, compare
    from w2vlab.corpus._trials import compare_embeddings

    clips = [name for name in ref if not name.startswith("utt:")]
    report = compare(
        np.stack([ref[n] for n in clips]),
        np.stack([cand[n] for n in clips]),
        names=clips,
        bounds=INT8_BOUNDS,
        num_samples=[samples[n] for n in clips],
    )
    out = {
        "worst_cosine": report.worst_cosine,
        "parity_passed": report.passed,
        "parity_bounds": report.bounds.describe(),
        "cosine": {c.name: c.cosine for c in report.clips},
    }
    if trials is not None:
        utts = lambda emb: {n.removeprefix("utt:"): v for n, v in emb.items() if n.startswith("utt:")}  # noqa: E731
        decisions = compare_embeddings(utts(ref), utts(cand), trials)
        out.update(
            flips=decisions.n_flips,
            flips_by_point={p.name: p.n_flips for p in decisions.points},
            max_score_diff=decisions.max_abs_diff,
        )
    return out


def metric_reduced_precision(ctx: BenchContext) -> Rows:
    """Each :data:`w2vlab.export._precision.RECIPES` candidate, built in its own process and alternated there
    with the fp32 eager model on the 10 s clip: latency, GFLOP/s against the same-run GEMM ceiling
    of its arithmetic, parity, flipped trial decisions, build time and peak RSS."""
    from w2vlab.export._precision import RECIPES, save_inputs

    feats, samples, trials = precision_inputs(ctx)
    inputs, out = ctx.work / "precision_inputs.npz", ctx.work / "precision_out.npz"
    save_inputs(inputs, feats)
    with torch.inference_mode():
        ref = {name: ctx.model(x)[0].numpy() for name, x in feats.items()}
    cfg, frames = ctx.model.encoder.config, feats["clip10"].shape[1]
    ceilings = gemm_ceilings(frames, cfg.hidden_size, cfg.intermediate_size, ctx.threads)
    flops = encoder_flops(flop_facts(ctx.model), frames)
    rows = {}
    for recipe, words in RECIPES.items():
        child = run_child_report(
            "precision_candidate", recipe, ctx.ckpt, ctx.art, inputs, out, ctx.threads, ctx.repeats, env=ctx.env
        )
        with np.load(out) as data:
            quality = precision_quality(ref, {k: data[k][0] for k in data.files}, samples, trials)
        for runner, s in child.report["s"].items():
            ceiling = ceilings.get(ceiling_for(runner), float("nan"))
            rows[runner] = {
                "recipe": words,
                "s": s,
                "eager_s": child.report["eager_s"],
                "ratio_vs_eager": s / child.report["eager_s"],
                "gflops": flops / s / 1e9,
                "ceiling": ceiling_for(runner),
                "fraction_of_ceiling": flops / s / ceiling,
                **quality,
                "build_s": child.report["build_s"],
                "build_peak_rss_bytes": child.report["build_peak_rss_bytes"],
                "child_peak_rss_bytes": child.peak_rss_bytes,
            }
    ok = {name: row["parity_passed"] and row.get("flips", 0) == 0 for name, row in rows.items()}
    best = min(rows, key=lambda name: rows[name]["ratio_vs_eager"])
    return {
        "reduced_precision_10s": metric(
            "fastest_s",
            rows[best]["s"],
            "eager_s",
            rows[best]["eager_s"],
            "<= 0.3 with int8 parity bounds and 0 flips",
            any(row["ratio_vs_eager"] <= 0.3 and ok[name] for name, row in rows.items()),
            fastest=best,
            runs=rows,
            gemm_ceilings_gflops={k: v / 1e9 for k, v in ceilings.items() if isinstance(v, float)},
            trials=None if trials is None else len(trials),
            note="each recipe in its own process; onnx-int8's build peak is the quantisation's alone, the bf16 "
            "builds' include the fp32 model they copy",
        )
    }


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
        "allocator_eager_10s": metric(
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


def metric_fastest_artifact_vs_eager(ctx: BenchContext) -> Rows:
    """The fastest format (int8 included) against eager, and the fastest fp32 one's ratio."""
    formats = ctx.formats
    fastest = min(formats, key=lambda f: formats[f]["ratio_vs_eager"])
    fp32 = fastest_fp32(formats)
    row = formats[fastest]
    return {
        "fastest_artifact_vs_eager_10s": metric(
            "fastest_s",
            row["s"],
            "eager_s",
            row["eager_s"],
            "<= 0.5 (int8: cosine >= 0.999)",
            row["ratio_vs_eager"] <= 0.5 and row["cosine"] >= 0.999,
            format=fastest,
            fastest_fp32=fp32,
            fastest_fp32_ratio=formats[fp32]["ratio_vs_eager"],
        )
    }


def metric_encoder_flops_fraction(ctx: BenchContext) -> Rows:
    """FLOP/s each format (and eager) reaches on the 10 s clip, over the best fp32 GEMM measured now at
    the model's feed-forward shape (torch, numpy, ONNX Runtime); and ONNX Runtime's profile of the
    ONNX file by op type: where the time outside the GEMMs goes."""
    formats, cfg, frames = ctx.formats, ctx.model.encoder.config, ctx.feats.shape[1]
    gemm = gemm_ceilings(frames, cfg.hidden_size, cfg.intermediate_size, ctx.threads, ctx.repeats)
    flops = encoder_flops(flop_facts(ctx.model), frames)
    best = gemm["fp32"]
    achieved = {
        "eager": flops / statistics.median(row["eager_s"] for row in formats.values()),
        **{f: flops / row["s"] for f, row in formats.items()},
    }
    fp32 = fastest_fp32(formats)
    profile = (
        onnx_op_profile(ctx.file("onnx"), ctx.feats, ctx.threads, ctx.repeats, ctx.work) if "onnx" in formats else None
    )
    return {
        "encoder_flops_fraction": {
            "gflop_per_clip": flops / 1e9,
            "best_gemm_gflops": {k: v / 1e9 for k, v in gemm.items() if k.startswith("fp32")},
            "gemm_shape": [frames, cfg.hidden_size, cfg.intermediate_size],
            "achieved_gflops": {k: v / 1e9 for k, v in achieved.items()},
            "fraction_of_best": {k: v / best for k, v in achieved.items()},
            "onnx_profile": profile,
            "note": "fp32 FLOPs over the best fp32 GEMM; the int8 copy's fraction is not comparable (int8 GEMMs)",
            "target": ">= 0.8 for the fastest fp32 artifact",
            "fastest_fp32": fp32,
            "met": achieved[fp32] / best >= 0.8,
        }
    }


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
        "time_to_first_embedding": metric(
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
        name: metric(
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


def metric_padded_batch(ctx: BenchContext) -> Rows:
    """A padded batch of 8 clips (2-10 s) through the TorchScript artifact against the same clips one by one."""
    from w2vlab._parity import compare
    from w2vlab.export._suite import synthetic_speech

    waves = [synthetic_speech(int(s * SR), seed=i) for i, s in enumerate(np.linspace(2, 10, 8))]
    batch = ctx.fe(waves, sampling_rate=SR, padding=True, return_tensors="pt", return_attention_mask=True)
    singles = [ctx.fe(w, sampling_rate=SR, return_tensors="pt", return_attention_mask=True) for w in waves]
    singles = [s["input_features"][:, s["attention_mask"][0].bool()] for s in singles]
    pre = ctx.pre
    with torch.inference_mode():
        t_batch, t_single = paired_seconds(
            lambda: pre(batch["input_features"], batch["attention_mask"]),
            lambda: [pre(s) for s in singles],
            ctx.repeats,
        )
        parity = compare(torch.cat([pre(s) for s in singles]), pre(batch["input_features"], batch["attention_mask"]))
    return {
        "padded_batch_8_vs_one_by_one": metric(
            "one_by_one_s",
            t_single,
            "batch_s",
            t_batch,
            ">= 1.5x throughput with max|diff| <= 1e-5",
            t_single / t_batch >= 1.5 and parity.worst_max_abs_diff <= 1e-5,
            max_abs_diff=parity.worst_max_abs_diff,
        )
    }


# --------------------------------------------------------------------------- corpus throughput

CORPUS_WARMUP = 1  # pairs of whole corpus runs before timing: TorchScript has then seen every batch shape
ONE_BY_ONE = 1e-9  # batch_seconds below any clip's length: every clip is a batch of its own
MAX_CORPUS_DIFF = 1e-5  # max |diff| between two runs' embeddings of the same corpus
# Batch budget of the peak-RSS runs: N (24, or 48) short clips (1-2 s) fill several batches of it, so both runs'
# largest batch is the same (at the default 60 s, 24 clips would be one batch smaller than the 10xN run's
# largest, and the ratio would measure batch size, not corpus size).
RSS_BATCH_SECONDS = 10.0


def corpus_lengths(count: int, low: float, high: float, seed: int = 7) -> list[float]:
    """``count`` clip lengths in seconds, uniform in [low, high], rounded to 10 ms (deterministic)."""
    return np.round(np.random.default_rng(seed).uniform(low, high, count), 2).tolist()


def write_corpus(directory: Path, lengths: Sequence[float], head: int | None = None) -> Path:
    """One 16 kHz 16-bit WAV file of synthetic speech per length, and their ``wav.scp``; returns it.

    With ``head``, also ``head.scp`` listing the first ``head`` clips.
    """
    import soundfile as sf

    from w2vlab.export._suite import synthetic_speech

    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, seconds in enumerate(lengths):
        path = (directory / f"clip{i:04d}.wav").resolve()
        sf.write(str(path), synthetic_speech(int(round(seconds * SR)), seed=100 + i), SR)
        lines.append(f"clip{i:04d} {path}\n")
    if head is not None:
        (directory / "head.scp").write_text("".join(lines[:head]))
    (directory / "wav.scp").write_text("".join(lines))
    return directory / "wav.scp"


class CorpusRuns:
    """Callable: one :func:`w2vlab.corpus._embed.embed_corpus` of the bench corpus with the context's embedder,
    each call into a fresh output directory (``force=True``); :attr:`output` is the last one."""

    def __init__(self, ctx: BenchContext, name: str, **options: Any):
        self.ctx, self.name, self.options = ctx, name, options
        self.calls, self.summary = 0, None

    @property
    def output(self) -> Path:
        return self.ctx.work / "corpus_runs" / f"{self.name}_{self.calls}"

    def __call__(self) -> Any:
        from w2vlab.corpus._embed import embed_corpus

        self.calls += 1
        self.summary = embed_corpus(
            self.ctx.corpus, self.output, self.ctx.embedder, progress=False, force=True, **self.options
        )
        if self.summary.failed or self.summary.done != self.ctx.corpus_files:
            raise RuntimeError(f"bench corpus run {self.output}: {self.summary.headline()}")
        return self.summary


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Largest |a[k] - b[k]| over every key; inf when the key sets differ."""
    if set(a) != set(b):
        return float("inf")
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def corpus_diff(a: Path, b: Path) -> float:
    """:func:`max_abs_diff` of two ``embed-corpus`` outputs, read back from their scp/ark."""
    from w2vlab.corpus._trials import load_embeddings

    return max_abs_diff(load_embeddings(a), load_embeddings(b))


def throughputs(ctx: BenchContext, **seconds: float) -> dict[str, float]:
    """``{name}_audio_s_per_s`` for each side's median wall seconds."""
    return {f"{name}_audio_s_per_s": ctx.corpus_seconds / s for name, s in seconds.items()}


def corpus_facts(ctx: BenchContext, batches: int) -> dict[str, Any]:
    return {"files": ctx.corpus_files, "audio_s": ctx.corpus_seconds, "batches": batches}


def prepared_corpus(ctx: BenchContext) -> list[Any]:
    """The corpus's batches exactly as the local engine plans them (default budget), with their model inputs
    computed beforehand (:class:`w2vlab.corpus._embed.BatchPreparer`)."""
    from w2vlab.corpus._embed import DEFAULT_BATCH_SECONDS, BatchPreparer, clip_seconds, plan_batches, read_source

    e = ctx.embedder
    batches = plan_batches([(item, clip_seconds(item)) for item in read_source(ctx.corpus)], DEFAULT_BATCH_SECONDS)
    preparer = BatchPreparer(e.prepare, e.sample_rate, e.min_num_samples)
    return [preparer(batch) for batch in batches]


def metric_corpus_pipeline_overhead(ctx: BenchContext) -> Rows:
    """The whole local pipeline (list, read, resample, features, bucketing, inference, kaldiio writing)
    against the model alone on the same batches' inputs already in memory."""
    prepared = prepared_corpus(ctx)
    pipeline = CorpusRuns(ctx, "pipeline")

    def model_only() -> list[torch.Tensor]:
        return [ctx.embedder.embed(batch.inputs) for batch in prepared]

    from w2vlab.corpus._trials import load_embeddings

    t_pipe, t_model = paired_seconds(pipeline, model_only, ctx.repeats, warmup=CORPUS_WARMUP)
    alone = {k: row for batch, out in zip(prepared, model_only()) for k, row in zip(batch.keys, out.numpy())}
    diff = max_abs_diff(load_embeddings(pipeline.output), alone)
    overhead = 1.0 - t_model / t_pipe
    return {
        "corpus_pipeline_overhead": metric(
            "pipeline_s",
            t_pipe,
            "model_only_s",
            t_model,
            "overhead <= 0.05 (meaningful at --size full; smaller models leave the fixed costs exposed)",
            overhead <= 0.05 and diff <= MAX_CORPUS_DIFF,
            overhead=overhead,
            overhead_definition="1 - model_only_s / pipeline_s: the share of the pipeline's wall time not spent "
            "in embedder.embed on the same batches",
            **throughputs(ctx, pipeline=t_pipe, model_only=t_model),
            max_abs_diff=diff,
            **corpus_facts(ctx, len(prepared)),
        )
    }


def metric_corpus_bucketing_vs_one_by_one(ctx: BenchContext) -> Rows:
    """The local pipeline with length-bucketed batches (default budget) against one clip per batch."""
    bucketed = CorpusRuns(ctx, "bucketed")
    single = CorpusRuns(ctx, "one_by_one", batch_seconds=ONE_BY_ONE)
    t_bucketed, t_single = paired_seconds(bucketed, single, ctx.repeats, warmup=CORPUS_WARMUP)
    diff = corpus_diff(bucketed.output, single.output)
    goal = 1.0 if ctx.size == "full" else 1.5
    applied = "--size full" if ctx.size == "full" else f"the --size small target at --size {ctx.size}"
    return {
        "corpus_bucketing_vs_one_by_one": metric(
            "one_by_one_s",
            t_single,
            "bucketed_s",
            t_bucketed,
            f">= 1.0x throughput at --size full, >= 1.5x at --size small (applied: >= {goal}, {applied}) "
            f"with max|diff| <= {MAX_CORPUS_DIFF}",
            t_single / t_bucketed >= goal and diff <= MAX_CORPUS_DIFF,
            **throughputs(ctx, bucketed=t_bucketed, one_by_one=t_single),
            max_abs_diff=diff,
            **corpus_facts(ctx, bucketed.summary.batches),
            one_by_one_batches=single.summary.batches,
        )
    }


def start_ray(ray: Any, workers: int) -> float | None:
    """Seconds ``ray.init`` took, or None when Ray was already running in this process (not started here)."""
    if ray.is_initialized():
        return None
    start = time.perf_counter()
    ray.init(num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    return time.perf_counter() - start


def metric_corpus_ray_vs_local(ctx: BenchContext) -> Rows:
    """The Ray Data engine (``threads`` actors of one thread each) against the local engine (one process,
    ``threads`` threads) on the same corpus and batches; ``ray.init`` timed apart, outside both sides."""
    target = f"max|diff| <= {MAX_CORPUS_DIFF}; speed reported, no target (one machine: Ray's gain is more machines)"
    try:
        from w2vlab.corpus._ray import require_ray, run_ray

        ray = require_ray()
    except ImportError as e:
        return {
            "corpus_ray_vs_local": {"skipped": "ray not installed", "reason": str(e), "target": target, "met": None}
        }
    workers = max(1, ctx.threads)
    init_s = start_ray(ray, workers)
    try:
        local = CorpusRuns(ctx, "local")
        remote = CorpusRuns(ctx, "ray", engine=run_ray, workers=workers)
        t_local, t_ray = paired_seconds(local, remote, ctx.repeats, warmup=CORPUS_WARMUP)
    finally:
        if init_s is not None:
            ray.shutdown()
    diff = corpus_diff(local.output, remote.output)
    return {
        "corpus_ray_vs_local": metric(
            "local_s",
            t_local,
            "ray_s",
            t_ray,
            target,
            diff <= MAX_CORPUS_DIFF,
            ray_init_s=init_s,
            ray_workers=workers,
            ray_version=ray.__version__,
            per_run="each Ray run starts its actor pool (actors load the artifact); ray.init is not in ray_s",
            **throughputs(ctx, local=t_local, ray=t_ray),
            max_abs_diff=diff,
            **corpus_facts(ctx, local.summary.batches),
        )
    }


def metric_corpus_peak_rss(ctx: BenchContext) -> Rows:
    """Peak RSS of ``embed_corpus`` (a child process each, same batch budget) on N and on 10xN short clips (1-2 s)."""
    n = ctx.corpus_files
    scp = write_corpus(ctx.work / "corpus_short", corpus_lengths(10 * n, 1.0, 2.0, seed=11), head=n)
    runs = {
        count: run_child_report(
            "embed_corpus_peak",
            ctx.art,
            source,
            ctx.work / "corpus_runs" / f"rss_{count}",
            ctx.threads,
            RSS_BATCH_SECONDS,
            env=ctx.env,
        )
        for count, source in ((n, scp.with_name("head.scp")), (10 * n, scp))
    }
    small, large = runs[n], runs[10 * n]
    return {
        "corpus_peak_rss_n_vs_10n": metric(
            "peak_rss_10n_bytes",
            large.peak_rss_bytes,
            "peak_rss_n_bytes",
            small.peak_rss_bytes,
            "<= 1.1",
            large.peak_rss_bytes <= 1.1 * small.peak_rss_bytes,
            files_n=n,
            files_10n=10 * n,
            audio_s_n=small.report["audio_seconds"],
            audio_s_10n=large.report["audio_seconds"],
            batch_seconds=RSS_BATCH_SECONDS,
            batches_n=small.report["batches"],
            batches_10n=large.report["batches"],
            wall_s_n=small.wall_s,
            wall_s_10n=large.wall_s,
        )
    }


# after the export, in this order (also the order of the JSON's metrics)
METRICS: tuple[Callable[[BenchContext], Rows], ...] = (
    metric_frontend_vs_hf,
    metric_frontend_busy,
    metric_waveform_vs_hf_plus_eager,
    metric_torchscript_vs_eager,
    metric_formats_vs_eager,
    metric_allocator,
    metric_onnx_rewrites,
    metric_reduced_precision,
    metric_fastest_artifact_vs_eager,
    metric_encoder_flops_fraction,
    metric_time_to_first_embedding,
    metric_cpp_vs_python_first_embedding,
    metric_padded_batch,
    metric_corpus_pipeline_overhead,
    metric_corpus_bucketing_vs_one_by_one,
    metric_corpus_ray_vs_local,
    metric_corpus_peak_rss,
)


SHARED = "export_peak_rss"  # the export every other metric measures its artifact from: always run


def metric_name(measure: Callable[[BenchContext], Rows]) -> str:
    """What ``--only`` calls a metric function: its name without ``metric_``."""
    return measure.__name__.removeprefix("metric_")


def select_metrics(only: Sequence[str] | None) -> tuple[Callable[[BenchContext], Rows], ...]:
    """The functions of :data:`METRICS` named in ``only`` (all when None), in :data:`METRICS` order.

    Raises ``ValueError`` naming the choices for an unknown name.
    """
    if only is None:
        return METRICS
    names = {metric_name(m) for m in METRICS} | {SHARED}
    unknown = [name for name in only if name not in names]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(names)}")
    return tuple(m for m in METRICS if metric_name(m) in only)


def run(
    size: str = "tiny",
    quick: bool = False,
    threads: int = 2,
    workdir: str | Path | None = None,
    only: Sequence[str] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    reuse: bool = False,
) -> dict[str, Any]:
    """Measure everything (or the metrics named in ``only``, after the export, which always runs) for the
    demo model of ``size``; returns the JSON-able result.

    A metric that raises is logged and listed under ``"failed"`` (type and message), and the
    run goes on with the next one; ``progress`` is called with the result so far after each
    metric (the command line writes it to ``--json``, so a run stopped at hour two keeps what
    it measured).  Checkpoints and artifacts go to ``workdir`` (kept), else to a temporary
    directory that is removed afterwards (at full size, every format of both modes: several
    times the weights' 2.3 GB).  ``reuse``: measure the checkpoint and artifact an earlier run
    left in ``workdir`` instead of exporting again (a full-size export takes about 7 minutes);
    the export's own row is then absent.
    """
    measures = select_metrics(only)
    if workdir is None:
        if reuse:
            raise ValueError("reuse needs the workdir of an earlier run")
        with tempfile.TemporaryDirectory(prefix="w2vlab-bench-") as tmp:
            return run(size, quick, threads, tmp, only, progress)
    torch.set_num_threads(threads)
    keep_freed_memory()  # time as the consumers run; the export child keeps glibc's defaults
    ctx = make_context(size, quick, threads, Path(workdir), reuse)
    result: dict[str, Any] = {
        "size": size,
        "quick": quick,
        "threads": threads,
        "repeats": ctx.repeats,
        "only": None if only is None else [*([] if reuse else [SHARED]), *map(metric_name, measures)],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "reused": str(workdir) if reuse else None,
    }
    start = time.perf_counter()
    result["metrics"] = {} if reuse else metric_export_peak_rss(ctx)
    result["wall_s"] = {} if reuse else {SHARED: time.perf_counter() - start}  # what each metric took, this run
    result["artifact_sizes"] = artifact_sizes(ctx)
    result["failed"] = {}
    for i, measure in enumerate(measures, 1):
        name = metric_name(measure)
        logger.info("bench: %s (%d of %d)", name, i, len(measures))
        start = time.perf_counter()
        try:
            result["metrics"].update(measure(ctx))
        except Exception as e:  # noqa: BLE001 - recorded, logged and reported by the exit status
            logger.exception("bench: %s failed", name)
            result["failed"][name] = f"{type(e).__name__}: {e}"
        result["wall_s"][name] = time.perf_counter() - start
        trim()  # this process keeps freed memory (keep_freed_memory): give back what the metric freed
        if progress is not None:
            progress(result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m w2vlab.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "small", "full"), default="tiny")
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a smoke run for CI")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the checkpoint and artifact here (default: a temporary directory, removed afterwards)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure the checkpoint and artifact an earlier run left in --workdir instead of exporting again",
    )
    parser.add_argument(
        "--only",
        metavar="METRIC[,METRIC]",
        type=lambda text: [n for n in text.split(",") if n],
        help=f"only these metrics (after the export, which always runs): {', '.join(metric_name(m) for m in METRICS)}",
    )
    args = parser.parse_args(argv)
    try:
        select_metrics(args.only)
    except ValueError as e:
        parser.error(str(e))
    if args.reuse:
        if args.workdir is None:
            parser.error("--reuse needs --workdir (the directory of an earlier run)")
        try:
            check_reusable(BenchContext(args.size, args.quick, args.threads, args.workdir))
        except ValueError as e:
            parser.error(str(e))
    logging.basicConfig(level=logging.WARNING)
    logger.setLevel(logging.INFO)  # which metric is running: a full-size run takes about two hours
    result = run(
        args.size,
        args.quick,
        args.threads,
        args.workdir,
        args.only,
        None if args.json is None else lambda partial: write_json(args.json, partial),
        args.reuse,
    )
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    if args.json:
        write_json(args.json, result)
    if result["failed"]:
        logger.error("bench: %d metric(s) failed: %s", len(result["failed"]), ", ".join(result["failed"]))
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
