"""Benchmark: speed and memory as ratios measured side by side in one run.

    python -m w2vlab.bench [--size tiny|small|full] [--quick] [--threads 2] [--json OUT]

Prints one JSON object.  Each metric has both sides' measurements (median of several runs
after a warm-up), their ratio, the target and whether it is met, plus the parity of what was
timed: a speed-up that loses parity does not count.  Every format is timed on the same 10 s clip:
TorchScript, the ``torch.export`` ``.pt2`` and, with the ``[onnx]`` extra, ONNX Runtime fp32 and
the dynamic-int8 copy (labelled as such, judged by cosine), with eager timed again at the end
as a drift check.  The machine this runs on is shared and
noisy, so only ratios taken in the same run are meaningful; none of this is a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

logger = logging.getLogger(__name__)

SR = 16000


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


_REPORT_HWM = """
import pathlib as _p, sys as _s
_hwm = [l for l in _p.Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM:')]
_s.stdout.write('\\nw2vlab-vmhwm-kib ' + (_hwm[0].split()[1] if _hwm else '-1') + '\\n')
"""


def run_child(code: str, env: dict[str, str]) -> tuple[float, float]:
    """Run ``code`` in a fresh interpreter: (wall seconds, that process's peak RSS in bytes).

    The peak is the child's own ``VmHWM`` (per address space, so it starts at zero at exec);
    ``ru_maxrss`` would also count the forked copy of this process before exec.
    """
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code + _REPORT_HWM], env=env, capture_output=True, text=True,
                            timeout=3600)
    wall = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(f"benchmark child failed ({result.returncode}):\n{result.stderr[-2000:]}")
    kib = int(result.stdout.rsplit("w2vlab-vmhwm-kib ", 1)[1].split()[0])
    return wall, kib * 1024.0


def _bench_file(work: Path, fmt: str) -> Path:
    """Where :func:`_time_formats` writes ``fmt``'s preprocessed-mode file."""
    from .formats import FORMAT_FILES

    return work / f"bench_{FORMAT_FILES[fmt, 'preprocessed']}"


def _time_formats(model, fe, feats, work: Path, threads: int, repeats: int) -> dict[str, dict[str, Any]]:
    """Export ``model`` (preprocessed mode) as .pt2, ONNX and int8 ONNX into ``work``; for each,
    its export seconds, size, latency on ``feats`` [1, T, 160] alternated with eager's, and
    parity with the eager model.  One file is loaded at a time."""
    import gc

    from .formats import export_onnx, export_program, load_format, onnx_available, quantize_onnx
    from .parity import compare

    with torch.inference_mode():
        want = model(feats)
    rows: dict[str, dict[str, Any]] = {}
    paths = {fmt: _bench_file(work, fmt) for fmt in ("exported", "onnx", "onnx-int8")}
    start = time.perf_counter()
    program = export_program(model, "preprocessed", fe, paths["exported"])
    seconds = {"exported": time.perf_counter() - start}
    if onnx_available():
        start = time.perf_counter()
        export_onnx(program, "preprocessed", fe, paths["onnx"])
        seconds["onnx"] = time.perf_counter() - start
        start = time.perf_counter()
        quantize_onnx(paths["onnx"], paths["onnx-int8"])
        seconds["onnx-int8"] = time.perf_counter() - start
    else:
        logger.warning("the [onnx] extra is not installed: no ONNX rows")
    del program
    for fmt in seconds:
        gc.collect()
        runner = load_format(paths[fmt], fmt, "preprocessed", threads=threads)
        with torch.inference_mode():
            t_eager, t = paired_seconds(lambda: model(feats), lambda: runner(feats), repeats)
            parity = compare(want, runner(feats))
        data = paths[fmt].with_name(paths[fmt].name + ".data")
        size = paths[fmt].stat().st_size + (data.stat().st_size if data.exists() else 0)
        rows[fmt] = {"s": t, "eager_s": t_eager, "ratio_vs_eager": t / t_eager,
                     "cosine": parity.worst_cosine, "max_abs_diff": parity.worst_max_abs_diff,
                     "bytes": size, "export_s": seconds[fmt]}
        del runner
    return rows


def run(size: str = "tiny", quick: bool = False, threads: int = 2, workdir: str | Path | None = None) -> dict[str, Any]:
    """Measure everything for the demo model of ``size``; returns the JSON-able result.

    Checkpoints and artifacts go to ``workdir`` (kept), else to a temporary directory that is
    removed afterwards (the full size writes ~4.6 GB).
    """
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="w2vlab-bench-") as tmp:
            return run(size, quick, threads, tmp)
    from transformers import SeamlessM4TFeatureExtractor

    from .checkpoint import load_speaker_encoder
    from .demo import write_demo_checkpoint
    from .export import ARTIFACT_FILES, load_module
    from .formats import parity_bounds
    from .features import FeatureConfig, TorchFeatureExtractor
    from .parity import compare
    from .suite import synthetic_speech

    torch.set_num_threads(threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    repeats = 3 if quick else 7
    work = Path(workdir)
    ckpt, art = work / f"demo_{size}", work / f"artifact_{size}"
    result: dict[str, Any] = {
        "size": size, "quick": quick, "threads": threads, "repeats": repeats,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "metrics": {},
    }
    metrics = result["metrics"]

    write_demo_checkpoint(ckpt, size=size, overwrite=True)
    weight_bytes = sum(p.stat().st_size for p in ckpt.glob("*.safetensors"))
    suite = "build_suite(QUICK_LENGTHS[:3], batches=((16160, 8000),))"
    export_code = textwrap.dedent(f"""
        import torch; torch.set_num_threads({threads})
        from w2vlab.export import export
        from w2vlab.suite import QUICK_LENGTHS, build_suite
        export({str(ckpt)!r}, {str(art)!r}, modes=("preprocessed", "waveform"), force=True,
               cases={suite}, progress=False)
    """)
    export_wall, export_rss = run_child(export_code, env)
    metrics["export_peak_rss"] = metric(
        "peak_rss_bytes", export_rss, "weight_bytes", weight_bytes, "<= 1.2 (meaningful at --size full)",
        export_rss <= 1.2 * weight_bytes, export_wall_s=export_wall)
    result["artifact_sizes"] = {p.name: p.stat().st_size for p in art.glob("*.pt")}

    loaded = load_speaker_encoder(ckpt)
    model, fe = loaded.model, SeamlessM4TFeatureExtractor(**loaded.preprocessor_config)
    pre, _ = load_module(art / ARTIFACT_FILES["preprocessed"])
    wav, _ = load_module(art / ARTIFACT_FILES["waveform"])

    # 1. frontend vs HF extractor
    frontend = torch.jit.script(TorchFeatureExtractor(FeatureConfig.from_extractor(fe)).eval())
    for seconds in (10, 60):
        wave = synthetic_speech(seconds * SR, seed=seconds)
        hf = lambda: fe(wave, sampling_rate=SR, return_tensors="pt", return_attention_mask=True)  # noqa: E731
        ours = lambda: frontend(torch.from_numpy(wave)[None])  # noqa: E731
        with torch.inference_mode():
            t_hf, t_ours = paired_seconds(hf, ours, repeats)
            ref, got = hf(), ours()
        diff = float((ref["input_features"] - got[0]).abs().max())
        metrics[f"frontend_vs_hf_{seconds}s"] = metric(
            "hf_s", t_hf, "torch_frontend_s", t_ours, ">= 5x faster", t_hf / t_ours >= 5 and diff <= 1e-4,
            feature_max_abs_diff=diff)

    # 2. artifact vs eager latency on one 10 s clip, and FLOP/s against the best GEMM
    out = fe(synthetic_speech(10 * SR, seed=3), sampling_rate=SR, return_tensors="pt", return_attention_mask=True)
    feats = out["input_features"][:, out["attention_mask"][0].bool()]
    with torch.inference_mode():
        t_eager, t_script = paired_seconds(lambda: model(feats), lambda: pre(feats), repeats)
        parity = compare(model(feats), pre(feats))
    wave10 = synthetic_speech(10 * SR, seed=3)

    def hf_then_eager():
        o = fe(wave10, sampling_rate=SR, return_tensors="pt", return_attention_mask=True)
        return model(o["input_features"], o["attention_mask"])

    with torch.inference_mode():
        t_hf_eager, t_wav = paired_seconds(hf_then_eager, lambda: wav(torch.from_numpy(wave10)[None]), repeats)
        wav_parity = compare(hf_then_eager(), wav(torch.from_numpy(wave10)[None]))
    metrics["waveform_artifact_vs_hf_plus_eager_10s"] = metric(
        "waveform_artifact_s", t_wav, "hf_plus_eager_s", t_hf_eager, "<= 1.0 with cosine >= 0.99999",
        t_wav <= t_hf_eager and wav_parity.worst_cosine >= 0.99999, max_abs_diff=wav_parity.worst_max_abs_diff)
    del wav
    metrics["torchscript_vs_eager_10s"] = metric(
        "torchscript_s", t_script, "eager_s", t_eager, "<= 1.0 with max|diff| 0",
        t_script <= t_eager and parity.worst_max_abs_diff == 0.0, max_abs_diff=parity.worst_max_abs_diff)

    # 3. every format on the same clip: .pt2, ONNX Runtime fp32 and its int8 copy, one loaded at a time
    formats = {"torchscript": {"s": t_script, "eager_s": t_eager, "ratio_vs_eager": t_script / t_eager,
                               "cosine": parity.worst_cosine, "max_abs_diff": parity.worst_max_abs_diff,
                               "bytes": (art / ARTIFACT_FILES["preprocessed"]).stat().st_size}}
    formats.update(_time_formats(model, fe, feats, work, threads, repeats))
    fastest = min(formats, key=lambda f: formats[f]["ratio_vs_eager"])
    fastest_fp32 = min((f for f in formats if f != "onnx-int8"), key=lambda f: formats[f]["ratio_vs_eager"])
    within = {f: row["cosine"] >= parity_bounds(f, "preprocessed").min_cosine
              and row["max_abs_diff"] <= parity_bounds(f, "preprocessed").max_abs_diff for f, row in formats.items()}
    metrics["formats_vs_eager_10s"] = {"formats": formats, "timing": "each format alternated with eager (paired medians)",
                                       "target": "each within its format's parity bounds", "met": all(within.values())}
    metrics["fastest_artifact_vs_eager_10s"] = metric(
        "fastest_s", formats[fastest]["s"], "eager_s", formats[fastest]["eager_s"], "<= 0.5 (int8: cosine >= 0.999)",
        formats[fastest]["ratio_vs_eager"] <= 0.5 and formats[fastest]["cosine"] >= 0.999, format=fastest,
        fastest_fp32=fastest_fp32, fastest_fp32_ratio=formats[fastest_fp32]["ratio_vs_eager"])
    gemm = best_gemm_flops(threads, repeats=repeats)
    flops = encoder_flops(flop_facts(model), feats.shape[1])
    best = max(gemm.values())
    achieved = {"eager": flops / statistics.median(row["eager_s"] for row in formats.values()),
                **{f: flops / row["s"] for f, row in formats.items()}}
    metrics["encoder_flops_fraction"] = {
        "gflop_per_clip": flops / 1e9, "best_gemm_gflops": {k: v / 1e9 for k, v in gemm.items()},
        "achieved_gflops": {k: v / 1e9 for k, v in achieved.items()},
        "fraction_of_best": {k: v / best for k, v in achieved.items()},
        "note": "fp32 FLOPs over the best fp32 GEMM; the int8 copy's fraction is not comparable (int8 GEMMs)",
        "target": ">= 0.8 for the fastest fp32 artifact",
        "fastest_fp32": fastest_fp32,
        "met": achieved[fastest_fp32] / best >= 0.8,
    }

    # 4. time to first embedding in a fresh process
    wav_path = work / "clip10s.npy"
    np.save(wav_path, synthetic_speech(10 * SR, seed=3))
    first = "out = fe(w, sampling_rate=16000, return_tensors='pt', return_attention_mask=True); m(out['input_features'][:, out['attention_mask'][0].bool()])"
    eager_code = (f"import numpy as np, torch; torch.set_num_threads({threads}); w = np.load({str(wav_path)!r})\n"
                  f"from w2vlab.checkpoint import load_speaker_encoder; from w2vlab.export import feature_extractor_for\n"
                  f"l = load_speaker_encoder({str(ckpt)!r}); m, fe = l.model, feature_extractor_for(l)\n"
                  f"with torch.inference_mode(): {first}")
    # each format's plain loader, then the artifact's extractor; ONNX Runtime wants numpy and every input
    open_code = {
        "torchscript": "run = torch.jit.load({path!r})",
        "exported": "m = torch.export.load({path!r}).module(); run = lambda x: m(x, torch.ones(x.shape[:2], dtype=torch.long))",
        "onnx": ("import onnxruntime as ort; o = ort.SessionOptions(); o.intra_op_num_threads = {threads}\n"
                 "s = ort.InferenceSession({path!r}, o, providers=['CPUExecutionProvider'])\n"
                 "run = lambda x: s.run(None, {{'input_features': x.numpy(), 'attention_mask': torch.ones(x.shape[:2], dtype=torch.long).numpy()}})"),
    }
    paths = {fmt: art / ARTIFACT_FILES["preprocessed"] if fmt == "torchscript" else _bench_file(work, fmt) for fmt in formats}
    format_code = {
        fmt: (f"import numpy as np, torch; torch.set_num_threads({threads}); w = np.load({str(wav_path)!r})\n"
              f"from transformers import AutoFeatureExtractor\n"
              + open_code[fmt.split("-")[0]].format(path=str(path), threads=threads)
              + f"\nfe = AutoFeatureExtractor.from_pretrained({str(art / 'feature_extractor')!r})\n"
              f"with torch.inference_mode(): {first.replace('m(', 'run(')}")
        for fmt, path in paths.items()
    }
    runs = 1 if quick else 3
    t_first_eager = statistics.median(run_child(eager_code, env)[0] for _ in range(runs))
    t_first = {fmt: statistics.median(run_child(code, env)[0] for _ in range(runs)) for fmt, code in format_code.items()}
    metrics["time_to_first_embedding"] = metric(
        "torchscript_s", t_first["torchscript"], "eager_s", t_first_eager, "<= 1.0", t_first["torchscript"] <= t_first_eager,
        **{f"{fmt}_s": t for fmt, t in t_first.items() if fmt != "torchscript"})

    # 5. a padded batch of 8 clips (2-10 s) vs the same clips one by one
    waves = [synthetic_speech(int(s * SR), seed=i) for i, s in enumerate(np.linspace(2, 10, 8))]
    batch = fe(waves, sampling_rate=SR, padding=True, return_tensors="pt", return_attention_mask=True)
    singles = [fe(w, sampling_rate=SR, return_tensors="pt", return_attention_mask=True) for w in waves]
    singles = [s["input_features"][:, s["attention_mask"][0].bool()] for s in singles]
    with torch.inference_mode():
        t_batch, t_single = paired_seconds(lambda: pre(batch["input_features"], batch["attention_mask"]),
                                           lambda: [pre(s) for s in singles], repeats)
        parity = compare(torch.cat([pre(s) for s in singles]), pre(batch["input_features"], batch["attention_mask"]))
    metrics["padded_batch_8_vs_one_by_one"] = metric(
        "one_by_one_s", t_single, "batch_s", t_batch, ">= 1.5x throughput with max|diff| <= 1e-5",
        t_single / t_batch >= 1.5 and parity.worst_max_abs_diff <= 1e-5, max_abs_diff=parity.worst_max_abs_diff)
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
