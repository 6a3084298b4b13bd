"""Export and artifact metrics: the export's peak RSS, each format against eager on the 10 s clip, the FLOP/s
they reach, and a padded batch against one clip at a time.
"""

from __future__ import annotations

import statistics

import numpy as np
import torch

from w2vlab._benchrow import FORMATS, FORMATS_ROW, MET, TARGET, FormatRow, metric_row
from w2vlab._features import extractor_valid_rows
from w2vlab.bench._context import BenchContext, Rows
from w2vlab.bench._flops import encoder_flops, flop_facts, gemm_ceilings
from w2vlab.bench._onnx import onnx_op_profile
from w2vlab.bench._procs import run_child_report
from w2vlab.bench._synth import SR
from w2vlab.bench._timing import paired_seconds


def metric_export_peak_rss(ctx: BenchContext) -> Rows:
    """Peak RSS of exporting the checkpoint (both modes, every format) against its weights on disk."""
    weight_bytes = sum(p.stat().st_size for p in ctx.ckpt.glob("*.safetensors"))
    child = run_child_report("export_artifact", ctx.ckpt, ctx.art, ctx.threads, env=ctx.env)
    return {
        "export_peak_rss": metric_row(
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
        "waveform_artifact_vs_hf_plus_eager_10s": metric_row(
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
        "torchscript_vs_eager_10s": metric_row(
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

    bounds = {fmt: format_bounds(fmt, "preprocessed") for fmt in ctx.formats}
    within = {
        fmt: row["cosine"] >= bounds[fmt].min_cosine
        and (bounds[fmt].max_rel_diff is None or row["max_rel_diff"] <= bounds[fmt].max_rel_diff)
        for fmt, row in ctx.formats.items()
    }
    return {
        FORMATS_ROW: {
            FORMATS: ctx.formats,
            "timing": "each format alternated with eager (paired medians)",
            TARGET: "each within its format's parity bounds",
            MET: all(within.values()),
        }
    }


def fastest_fp32(formats: dict[str, FormatRow]) -> str:
    """The fp32 format with the lowest latency relative to eager."""
    return min((f for f in formats if f != "onnx-int8"), key=lambda f: formats[f]["ratio_vs_eager"])


def metric_fastest_artifact_vs_eager(ctx: BenchContext) -> Rows:
    """The fastest format (int8 included) against eager, and the fastest fp32 one's ratio."""
    formats = ctx.formats
    fastest = min(formats, key=lambda f: formats[f]["ratio_vs_eager"])
    fp32 = fastest_fp32(formats)
    row = formats[fastest]
    return {
        "fastest_artifact_vs_eager_10s": metric_row(
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


def metric_padded_batch(ctx: BenchContext) -> Rows:
    """A padded batch of 8 clips (2-10 s) through the TorchScript artifact against the same clips one by one."""
    from w2vlab._parity import compare
    from w2vlab.export._suite import synthetic_speech

    waves = [synthetic_speech(int(s * SR), seed=i) for i, s in enumerate(np.linspace(2, 10, 8))]
    batch = ctx.fe(waves, sampling_rate=SR, padding=True, return_tensors="pt", return_attention_mask=True)
    singles = [extractor_valid_rows(ctx.fe, w) for w in waves]
    pre = ctx.pre
    with torch.inference_mode():
        t_batch, t_single = paired_seconds(
            lambda: pre(batch["input_features"], batch["attention_mask"]),
            lambda: [pre(s) for s in singles],
            ctx.repeats,
        )
        parity = compare(torch.cat([pre(s) for s in singles]), pre(batch["input_features"], batch["attention_mask"]))
    return {
        "padded_batch_8_vs_one_by_one": metric_row(
            "one_by_one_s",
            t_single,
            "batch_s",
            t_batch,
            ">= 1.5x throughput with max|diff| <= 1e-5",
            t_single / t_batch >= 1.5 and parity.worst_max_abs_diff <= 1e-5,
            max_abs_diff=parity.worst_max_abs_diff,
        )
    }
