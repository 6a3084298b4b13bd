"""The OpenVINO family: the artifact's fp32 ONNX file run by OpenVINO's CPU plugin at f32 and bf16 (set
explicitly, never OpenVINO's default), and NNCF int8 copies, beside ONNX Runtime fp32 and eager in one process.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2vlab._benchrow import RATIO_VS_EAGER, SKIPPED, metric_row
from w2vlab.bench._context import BenchContext, Rows
from w2vlab.bench._flops import ceiling_for, encoder_flops, flop_facts, gemm_ceilings
from w2vlab.bench._openvino import openvino_gemm_ceilings
from w2vlab.bench._procs import ChildRun, run_child_report

logger = logging.getLogger(__name__)

OPENVINO_ROW = "openvino_10s"
CPU_FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")


def metric_openvino(ctx: BenchContext) -> Rows:
    """Every :data:`w2vlab.bench._openvino.CANDIDATES` runner and the artifact's ONNX Runtime fp32 file, built
    in one child process and alternated there with the fp32 eager model on the 10 s clip: latency against
    eager, cosine and max|diff| against this process's eager model on the parity clips, GFLOP/s against
    the same-run GEMM ceiling of its arithmetic, compile time, the child's peak RSS."""
    from w2vlab._contract import onnx_available
    from w2vlab.bench._metrics_precision import precision_inputs
    from w2vlab.bench._openvino import OPENVINO_HINT, RECIPE, calibration_features, nncf_available, openvino_available
    from w2vlab.export._precision import save_inputs

    if not openvino_available():
        return {OPENVINO_ROW: {SKIPPED: f"openvino is not installed ({OPENVINO_HINT})", "target": "-", "met": None}}
    if "onnx" not in ctx.artifact_formats:
        why = "the artifact has no fp32 ONNX file (the [onnx] extra is not installed)"
        return {OPENVINO_ROW: {SKIPPED: why, "target": "-", "met": None}}
    feats, samples, trials = precision_inputs(ctx)
    inputs, out = ctx.work / "openvino_inputs.npz", ctx.work / "openvino_out.npz"
    save_inputs(inputs, feats)
    calibration: Path | str = "-"
    if nncf_available():
        calibration = ctx.work / "openvino_calibration.npz"
        save_inputs(calibration, calibration_features(ctx.fe))
    with torch.inference_mode():
        ref = {name: ctx.model(x)[0].numpy() for name, x in feats.items()}
    cfg, frames = ctx.model.encoder.config, feats["clip10"].shape[1]
    ceilings = same_run_ceilings(frames, cfg.hidden_size, cfg.intermediate_size, ctx.threads)
    flops = encoder_flops(flop_facts(ctx.model), frames)
    ctx.release_models()  # the child holds the eager model and every candidate: give this process's back
    child = run_child_report(
        "openvino_candidates", ctx.ckpt, ctx.art, inputs, calibration, out, ctx.threads, ctx.repeats, env=ctx.env
    )
    rows = candidate_rows(child, out, ref, samples, trials, flops, ceilings)
    return {OPENVINO_ROW: summary_row(rows, ceilings, child, trials, nncf_available(), onnx_available(), RECIPE)}


def same_run_ceilings(rows: int, inner: int, outer: int, threads: int) -> dict[str, float]:
    """:func:`~w2vlab.bench._flops.gemm_ceilings` (torch, numpy, ONNX Runtime) and OpenVINO's own MatMul at f32
    and bf16, measured now; ``fp32`` and ``bf16`` the best of each precision (``bf16_torch``: torch's)."""
    ceilings = gemm_ceilings(rows, inner, outer, threads)
    ceilings["bf16_torch"] = ceilings["bf16"]
    ceilings.update(openvino_gemm_ceilings(rows, inner, outer, threads))
    for precision in ("fp32", "bf16"):
        ceilings[precision] = max(v for k, v in ceilings.items() if k.startswith(f"{precision}_"))
    return ceilings


def candidate_rows(
    child: ChildRun,
    out: Path,
    ref: dict[str, np.ndarray],
    samples: dict[str, int],
    trials: Any,
    flops: float,
    ceilings: dict,
) -> dict[str, dict[str, Any]]:
    """One row per runner of the child (its embeddings in ``out``): latency against the child's eager, quality
    against ``ref`` (this process's eager embeddings), GFLOP/s against the same-run ceiling of its arithmetic,
    its build facts."""
    from w2vlab._parity import compare, format_bounds
    from w2vlab.bench._metrics_precision import precision_quality

    fp32_bounds = format_bounds("onnx", "preprocessed")
    rows = {}
    with np.load(out) as data:
        for runner, s in child.report["s"].items():
            cand = {name: data[f"{runner}/{name}"][0] for name in ref}
            exact = compare(np.stack(list(ref.values())), np.stack(list(cand.values())), bounds=fp32_bounds)
            ceiling = ceiling_for(runner)
            rows[runner] = {
                "s": s,
                "eager_s": child.report["eager_s"],
                RATIO_VS_EAGER: s / child.report["eager_s"],
                "max_abs_diff": exact.worst_max_abs_diff,
                "max_rel_diff": exact.worst_max_rel_diff,
                "within_fp32_bounds": exact.passed,
                **precision_quality(ref, cand, samples, trials),
                "gflops": flops / s / 1e9,
                "ceiling": ceiling,
                "fraction_of_ceiling": flops / s / ceilings.get(ceiling, float("nan")),
                **child.report["builds"].get(runner, {}),
            }
    return rows


def summary_row(
    rows: dict[str, dict[str, Any]],
    ceilings: dict,
    child: ChildRun,
    trials: Any,
    int8: bool,
    onnx: bool,
    recipe: str,
) -> dict[str, Any]:
    """The family's row: OpenVINO f32 against eager (target: the fp32 one, <= 0.75 within the fp32 bounds),
    every runner under ``runs``, the fastest labelled one, the ceilings, the CPU's features."""
    f32 = rows["openvino-f32"]
    labelled = [n for n in rows if n not in ("onnx", "openvino-f32")]
    ok = [n for n in labelled if rows[n]["parity_passed"] and rows[n].get("flips", 0) == 0]  # int8's bounds
    fastest = min(ok, key=lambda n: rows[n][RATIO_VS_EAGER], default=None)
    notes = {} if int8 else {"int8_skipped": "nncf is not installed: no int8 candidates"}
    if "int8_error" in child.report["builds"]:
        notes["int8_skipped"] = f"NNCF failed: {child.report['builds']['int8_error']}"
    if trials is None:
        from w2vlab.bench._metrics_precision import NO_TRIALS

        notes["trials_skipped"] = NO_TRIALS
    if not onnx:
        notes["onnx_skipped"] = "onnxruntime is not installed: no ONNX Runtime row to compare with"
    return metric_row(
        "openvino_f32_s",
        f32["s"],
        "eager_s",
        f32["eager_s"],
        "<= 0.75 with max|diff| within the fp32 bounds (fp32); labelled: <= 0.3 within int8's parity bounds",
        f32[RATIO_VS_EAGER] <= 0.75 and f32["within_fp32_bounds"],
        f32_vs_onnxruntime=f32["s"] / rows["onnx"]["s"] if "onnx" in rows else None,
        fastest_labelled=fastest,
        fastest_labelled_ratio=None if fastest is None else rows[fastest][RATIO_VS_EAGER],
        runs=rows,
        gemm_ceilings_gflops={k: v / 1e9 for k, v in ceilings.items() if isinstance(v, float)},
        child_peak_rss_bytes=child.peak_rss_bytes,
        build_peak_rss_bytes=child.report["build_peak_rss_bytes"],
        trials=None if trials is None else len(trials),
        cpu=cpu_features(),
        recipe=recipe,
        **notes,
    )


def cpu_features() -> dict[str, Any]:
    """Which of :data:`CPU_FLAGS` this CPU has (``/proc/cpuinfo``), its model name, and what OpenVINO's CPU
    plugin says it can run (``OPTIMIZATION_CAPABILITIES``) and defaults to (``INFERENCE_PRECISION_HINT``)."""
    from w2vlab._contract import require
    from w2vlab.bench._openvino import OPENVINO_HINT, property_text

    require("openvino", needed_by="the OpenVINO benchmark row", hint=OPENVINO_HINT)
    import openvino as ov

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), None)
    core = ov.Core()
    return {
        "model_name": model,
        "flags": {flag: flag in flags for flag in CPU_FLAGS},
        "openvino": ov.__version__,
        "openvino_capabilities": [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")],
        "openvino_default_precision": property_text(core.get_property("CPU", "INFERENCE_PRECISION_HINT")),
    }
