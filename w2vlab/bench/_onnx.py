"""ONNX Runtime pieces of the benchmark: a one-``MatMul`` graph (a GEMM ceiling) and a model's profile by op type."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch


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
    feed = {
        "input_features": feats.numpy(),
        "attention_mask": np.ones(feats.shape[:2], np.int32),
    }  # the programs take the extractor's int32 mask
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
