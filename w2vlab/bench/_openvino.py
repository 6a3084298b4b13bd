"""OpenVINO candidates of the benchmark: the artifact's fp32 ONNX file compiled by OpenVINO's CPU plugin at an
explicit inference precision, and an NNCF int8 copy of it.

OpenVINO's CPU plugin runs an fp32 program in bf16 by itself on a CPU with AVX512_BF16 or AMX
(``INFERENCE_PRECISION_HINT`` defaults to bf16 there), so every compile here sets the hint and every
row names the precision the compiled model reports back.  ``openvino`` (and ``nncf`` for the int8
copy) are optional: :data:`w2vlab._contract.OPENVINO_HINT` says how to install them.  The f32 candidate
won, and is the "openvino" artifact format (:mod:`w2vlab.runtime._loaders` runs it, with the same settings);
:mod:`w2vlab.bench._metrics_openvino` measures it against the other formats.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2vlab._contract import OPENVINO_HINT, require
from w2vlab.runtime._loaders import OpenVinoCore

logger = logging.getLogger(__name__)

# runner -> (what the program is, INFERENCE_PRECISION_HINT): the float ones read the artifact's fp32 ONNX file,
# the int8 ones NNCF's quantised copy of it (its float parts at the hint's precision)
CANDIDATES: dict[str, tuple[str, str]] = {
    "openvino-f32": ("fp32", "f32"),
    "openvino-bf16": ("fp32", "bf16"),
    "openvino-int8": ("int8", "f32"),
    "openvino-int8-bf16": ("int8", "bf16"),
}
RECIPE = (
    "the artifact's preprocessed fp32 ONNX file read by OpenVINO (ov.Core.read_model), CPU plugin, "
    "INFERENCE_PRECISION_HINT as named, PERFORMANCE_HINT LATENCY, INFERENCE_NUM_THREADS = --threads; int8: "
    "nncf.quantize(model_type=TRANSFORMER, depthwise convolutions kept float) calibrated on four 8 s synthetic "
    "speech clips that are not the parity clips"
)


def openvino_available() -> bool:
    """Whether ``openvino`` is installed (``nncf`` too: :func:`nncf_available`)."""
    return importlib.util.find_spec("openvino") is not None


def nncf_available() -> bool:
    """Whether ``nncf`` (the int8 candidates' post-training quantisation) is installed."""
    return importlib.util.find_spec("nncf") is not None


def compile_config(precision: str, threads: int) -> dict[str, str]:
    """The CPU plugin's settings for one candidate: ``precision`` ("f32" or "bf16") set explicitly, latency
    mode, ``threads`` inference threads."""
    if precision not in ("f32", "bf16"):
        raise ValueError(f"OpenVINO inference precision must be 'f32' or 'bf16'; got {precision!r}")
    return {
        "INFERENCE_PRECISION_HINT": precision,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": str(threads),
    }


def property_text(value: Any) -> str:
    """An OpenVINO property as text: an element type by its short name ("f32", "bf16"), anything else by str."""
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)


def compile_candidate(core: Any, model: Any, precision: str, threads: int) -> tuple[Any, dict[str, Any]]:
    """``model`` (an ``ov.Model``) compiled for the CPU at ``precision``: the compiled model, and the
    seconds it took with the settings the compiled model reports back (the precision it runs at)."""
    start = time.perf_counter()
    compiled = core.compile_model(model, "CPU", compile_config(precision, threads))
    seconds = time.perf_counter() - start
    reported = {
        key: property_text(compiled.get_property(key))
        for key in ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "INFERENCE_NUM_THREADS")
    }
    return compiled, {"compile_s": seconds, "reported": reported}


def quantize_int8(model: Any, calibration: dict[str, torch.Tensor]) -> Any:
    """NNCF's post-training int8 copy of ``model`` (``ov.Model``), calibrated on ``calibration``'s
    ``[1, T, 160]`` feature tensors (masks all ones), ``model_type=TRANSFORMER`` (SmoothQuant on).

    ``model`` is constant-folded first (in place; the compiled float candidates fold it too): the full-size
    ONNX file keeps ``Gather`` nodes slicing the rewritten blocks' pointwise-convolution weights, on which
    NNCF 3.4's quantizer propagation fails with a ``KeyError``.  The conformer convolution's depthwise
    ``GroupConvolution`` stays float: NNCF 3.4 quantises its input per channel above the
    ``[B, T, C] -> [B, C, T]`` transpose, on the time axis, so the copy would hold ranges of the
    calibration clips' length and refuse any other length."""
    require("nncf", needed_by="the OpenVINO int8 candidate", hint=OPENVINO_HINT)
    import nncf
    from openvino.passes import ConstantFolding, Manager

    passes = Manager()
    passes.register_pass(ConstantFolding())
    passes.run_passes(model)  # in place: the Gathers slicing pointwise-conv weights, which NNCF 3.4 cannot place

    names = [port.get_any_name() for port in model.inputs]
    items = [
        dict(zip(names, (x.numpy(), np.ones(x.shape[:2], np.int32)))) for x in calibration.values()
    ]  # the programs take the extractor's int32 mask
    return nncf.quantize(
        model,
        nncf.Dataset(items),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(items),
        ignored_scope=nncf.IgnoredScope(types=["GroupConvolution"]),
    )


def build_openvino(
    onnx_path: Path, threads: int, calibration: dict[str, torch.Tensor] | None, feature_dim: int
) -> tuple[dict[str, Callable[..., torch.Tensor]], dict[str, dict[str, Any]]]:
    """The :data:`CANDIDATES` as runners ``features [1, T, 160] -> [1, D]``, and per runner its build facts:
    compile seconds, the settings reported back, resident bytes after it, and for int8 the quantisation's
    seconds.  ``calibration`` None (or no ``nncf``): the float candidates only; where NNCF fails, the float
    ones and its error under ``int8_error``."""
    require("openvino", needed_by="the OpenVINO benchmark candidates", hint=OPENVINO_HINT)
    import openvino as ov

    from w2vlab.runtime._entry import PreprocessedSpeakerEncoder

    core = ov.Core()
    start = time.perf_counter()
    programs = {"fp32": core.read_model(str(onnx_path))}
    read_s = time.perf_counter() - start
    quantize_s, runners, facts = None, {}, {}
    if calibration is not None and nncf_available():
        start = time.perf_counter()
        try:
            programs["int8"] = quantize_int8(programs["fp32"], calibration)
        except Exception as e:  # noqa: BLE001 - NNCF's own failures (3.4 at full size: a KeyError); the row says it
            logger.exception("NNCF could not quantise %s", onnx_path)
            facts["int8_error"] = f"{type(e).__name__}: {e}"
        quantize_s = time.perf_counter() - start
    for name, (program, precision) in CANDIDATES.items():
        if program not in programs:
            continue
        compiled, facts[name] = compile_candidate(core, programs[program], precision, threads)
        facts[name].update(program=program, read_s=read_s, rss_after_bytes=resident_bytes())
        if program == "int8":
            facts[name]["quantize_s"] = quantize_s
        runners[name] = PreprocessedSpeakerEncoder(OpenVinoCore(compiled), feature_dim)
    return runners, facts


def openvino_gemm_ceilings(rows: int, inner: int, outer: int, threads: int, repeats: int = 5) -> dict[str, float]:
    """FLOP/s of OpenVINO's CPU plugin on one ``[rows, inner] x [inner, outer]`` MatMul (``b`` a constant, as
    the model's weights are), compiled as the candidates are, at f32 and at bf16: ``fp32_openvino``,
    ``bf16_openvino``."""
    require("openvino", needed_by="the OpenVINO GEMM ceilings", hint=OPENVINO_HINT)
    import openvino as ov
    import openvino.opset13 as ops

    from w2vlab.bench._timing import median_seconds

    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, inner), dtype=np.float32)
    param = ops.parameter([-1, inner], ov.Type.f32, name="a")
    matmul = ops.matmul(param, ops.constant(rng.standard_normal((inner, outer), dtype=np.float32)), False, False)
    model, core = ov.Model([matmul], [param], "gemm"), ov.Core()
    out = {}
    for name, precision in (("fp32_openvino", "f32"), ("bf16_openvino", "bf16")):
        request = core.compile_model(model, "CPU", compile_config(precision, threads)).create_infer_request()
        out[name] = 2.0 * rows * inner * outer / median_seconds(lambda r=request: r.infer({0: a}), repeats)
    return out


def resident_bytes() -> int:
    """This process's resident memory now (``VmRSS``), in bytes; -1 where /proc is not available."""
    from w2vlab.bench._memory import status_kib

    kib = status_kib("VmRSS")
    return kib * 1024 if kib >= 0 else -1


def calibration_features(fe: Any, seeds: range = range(100, 104), seconds: float = 8.0) -> dict[str, torch.Tensor]:
    """HF features (valid rows, ``[1, T, 160]``) of synthetic speech clips of ``seconds`` drawn with ``seeds``,
    none of them a parity clip (those use seeds 0-5, and 3 for the 10 s one): the int8 candidates'
    calibration.  One length for all: NNCF stacks some statistics across its calibration samples."""
    from w2vlab._features import extractor_valid_rows
    from w2vlab.export._suite import synthetic_speech

    return {f"calib_{s}": extractor_valid_rows(fe, synthetic_speech(int(seconds * 16000), seed=s)) for s in seeds}
