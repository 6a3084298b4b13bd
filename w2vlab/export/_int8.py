"""Dynamic int8 quantisation of an fp32 ONNX file, one weight at a time.

The graph written is ONNX Runtime's ``quantize_dynamic(per_channel=True, weight_type=QInt8,
op_types_to_quantize=["MatMul"])``, weight for weight (``tests/test_int8.py`` checks it against
that function): every ``MatMul`` (and ``Gemm``, as ``MatMul`` + ``Add``) whose second input is a
2-D float32 initializer ``W [K, N]`` becomes::

    DynamicQuantizeLinear(A) -> A_q uint8, a_scale, a_zp        (once per A)
    MatMulInteger(A_q, W_q int8 [K, N], a_zp, 0) -> int32
    Cast(float) * (a_scale * w_scale [N])                       (ONNX Runtime fuses these)

with ``w_scale = max|W[:, n]| / 127`` and ``W_q = round(W / w_scale)`` (symmetric, per output
channel), except those of the blocks in :data:`KEEP_FP32`, which stay fp32.  ONNX Runtime's
quantiser holds three copies of the fp32 graph (it saves and reloads the model for shape inference
twice), 7.6 GB for a 2.35 GB model; this one reads each fp32 weight from the external-data file as
it is quantised, so it holds the graph without weights plus the int8 copy it writes.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from w2vlab._contract import ONNX_HINT, read_external_bytes, require

logger = logging.getLogger(__name__)

INT8_MAX = 127  # symmetric int8: [-127, 127], zero point 0

# Blocks whose MatMuls keep float32 weights, named by class as the ONNX exporter records them in each
# node's ``pkg.torch.onnx.class_hierarchy``.  The conv block's pointwise convolutions (run as MatMul by
# w2vlab.export._rewrites): quantised, the full-size 35 ms clip fell to cosine 0.9959 (bound 0.998).  At full
# size the capture leaves their weights behind a Gather, not as initializers, so they would stay fp32
# anyway; at the tiny size the optimiser folds that Gather into an initializer, and without this list
# the tests would check a recipe the full-size export never ships.  The feature projection (one MatMul,
# 160 -> hidden, on the raw features): quantised, a full-size 35 ms clip of the parity suite measured cosine
# 0.99781 (bound 0.998) and ``--format all`` refused the copy; fp32, 0.99834, and the 10 s clip's time
# moved within the run's noise (1.67 s -> 1.86 s, min of 3; eager 4.78 s).  Keeping the attention blocks
# fp32 instead gave 0.99897 at 2.63 s.
KEEP_FP32 = ("Wav2Vec2BertConvolutionModule", "Wav2Vec2BertFeatureProjection")


def recipe(keep_fp32: Sequence[str] = KEEP_FP32) -> dict[str, Any]:
    """What :func:`quantize_onnx` does, as an artifact's metadata records it beside the int8 file."""
    return {
        "weights": "MatMul/Gemm initializers: int8, symmetric, per output channel",
        "activations": "uint8, per call (DynamicQuantizeLinear)",
        "kept_fp32": list(keep_fp32),
    }


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(W_q int8 [K, N], scale float32 [N])`` of a float32 ``W [K, N]``, per output channel."""
    absmax = np.abs(w).max(axis=0)  # [N]
    scale = (absmax.astype(np.float64) * 2 / (2 * INT8_MAX)).astype(np.float32)
    scale[scale < np.finfo(np.float32).tiny] = 1.0  # an all-zero channel
    q = np.clip(np.round(w / scale), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale


def quantize_onnx(source: str | Path, path: str | Path, keep_fp32: Sequence[str] = KEEP_FP32) -> None:
    """Write the dynamic-int8 copy of the fp32 ONNX file ``source`` to ``path``, its weights in
    ``<path>.data`` beside it; MatMuls inside a block named in ``keep_fp32`` (a class name or a module path,
    :func:`in_blocks`) stay fp32.

    External weights are what a consumer opens fastest: at full size (0.82 GB of int8 weights)
    ONNX Runtime built its session in 2.0 s instead of 3.1 s and peaked at 1.2 GB instead of
    1.8 GB, and the content hash (:func:`w2vlab._contract.onnx_sha256`) reads the weights as
    bytes instead of parsing them out of the protobuf (1.1 s).

    About 2.9x smaller (0.82 GB for 2.35 GB at full size) and, on 2 CPU threads at full size,
    0.37-0.47x eager's latency in the committed benchmark (from the rewritten graph of
    :mod:`w2vlab.export._rewrites`), at cosine ~0.9999 to it on 10 s: verify it with
    :data:`w2vlab._parity.INT8_BOUNDS`, never as an exact copy.  The frontend's float64 mel
    projection is not quantised (only float32 weights are).

    Raises:
        ValueError: ``source`` is older than opset 11 (no ``DynamicQuantizeLinear``).
    """
    require("onnx", needed_by="int8 quantisation of an ONNX file", hint=ONNX_HINT)
    import onnx

    source, path = Path(source), Path(path)
    model = onnx.load(str(source), load_external_data=False)  # the graph; weights are read one at a time
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 11:
        raise ValueError(f"{source} uses opset {opset}; dynamic int8 quantisation needs opset >= 11")
    weights = _Weights(model.graph, source.parent)
    nodes, quantised, kept = _rewrite(model.graph.node, weights, frozenset(keep_fp32))
    model.graph.ClearField("node")
    model.graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input} | {out.name for out in model.graph.output}
    inits = model.graph.initializer
    for i in reversed(range(len(inits))):  # the fp32 weights now quantised (external ones were never loaded)
        if inits[i].name not in used:
            del inits[i]
    for init in inits:
        weights.inline(init)
    logger.info(
        "quantised %d MatMul weights of %s; %d kept fp32 in %s",
        quantised,
        source.name,
        kept,
        ", ".join(keep_fp32) or "no block",
    )
    path.with_name(path.name + ".data").unlink(missing_ok=True)  # onnx appends to an existing data file
    onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data", size_threshold=1024)


class _Weights:
    """Initializers of a graph loaded without its external data, read from disk when asked for."""

    def __init__(self, graph, base: Path) -> None:
        self.base = base
        self.by_name = {init.name: init for init in graph.initializer}
        self.initializers = graph.initializer  # int8 weights, scales and zero points are added here
        self.quantised: dict[str, tuple[str, str, str]] = {}  # fp32 name -> (q, scale, zero point)

    def array(self, name: str) -> np.ndarray:
        from onnx import helper, numpy_helper

        init = self.by_name[name]
        if init.data_location != init.EXTERNAL:
            return numpy_helper.to_array(init)
        dtype = helper.tensor_dtype_to_np_dtype(init.data_type)
        return np.frombuffer(read_external_bytes(init, self.base), dtype=dtype).reshape(tuple(init.dims))

    def inline(self, init) -> None:
        """Read an externally stored initializer's bytes into it (``raw_data``)."""
        if init.data_location == init.EXTERNAL:
            init.raw_data = read_external_bytes(init, self.base)
            del init.external_data[:]
            init.data_location = init.DEFAULT

    def is_float_matrix(self, name: str) -> bool:
        init = self.by_name.get(name)
        return init is not None and init.data_type == 1 and len(init.dims) == 2  # FLOAT

    def quantise(self, name: str, transpose: bool = False) -> tuple[str, str, str]:
        """Names of ``name``'s int8 weight, scale and zero point (made once per weight)."""
        key = name + ("_Transposed" if transpose else "")
        if key not in self.quantised:
            from onnx import numpy_helper

            w = self.array(name)
            q, scale = quantize_weight(np.ascontiguousarray(w.T) if transpose else w)
            names = (f"{key}_quantized", f"{key}_scale", f"{key}_zero_point")
            for array, new in zip((q, scale, np.zeros_like(scale, dtype=np.int8)), names):
                self.initializers.append(numpy_helper.from_array(array, new))  # a copy: the temporary is freed
            self.quantised[key] = names
        return self.quantised[key]


def _rewrite(nodes, weights: _Weights, keep_fp32: frozenset[str]) -> tuple[list, int, int]:
    """The graph's nodes with every quantisable MatMul/Gemm replaced, in order; how many were, and
    how many were left fp32 for being in ``keep_fp32``'s blocks."""
    from onnx import TensorProto, helper

    out, activations, count, kept = [], {}, 0, 0
    for node in nodes:
        b = node.input[1] if len(node.input) > 1 else ""
        gemm = node.op_type == "Gemm" and _plain_gemm(node)
        quantisable = (node.op_type == "MatMul" or gemm) and weights.is_float_matrix(b)
        if quantisable and in_blocks(node, keep_fp32):
            quantisable, kept = False, kept + 1
        if not quantisable:
            out.append(node)
            continue
        a, name = node.input[0], node.name or node.output[0]
        if a not in activations:
            activations[a] = (f"{a}_quantized", f"{a}_scale", f"{a}_zero_point")
            out.append(helper.make_node("DynamicQuantizeLinear", [a], list(activations[a]), name=f"{a}_QuantizeLinear"))
        a_q, a_scale, a_zp = activations[a]
        w_q, w_scale, w_zp = weights.quantise(b, transpose=gemm and _attr(node, "transB", 0) == 1)
        bias = node.input[2] if gemm and len(node.input) > 2 else ""
        product = node.output[0] + ("_matmul" if bias else "")
        out += [
            helper.make_node("Mul", [a_scale, w_scale], [f"{name}_scales"], name=f"{name}_quant_scales_mul"),
            helper.make_node("MatMulInteger", [a_q, w_q, a_zp, w_zp], [f"{name}_int32"], name=f"{name}_quant"),
            helper.make_node("Cast", [f"{name}_int32"], [f"{name}_float"], to=TensorProto.FLOAT, name=f"{name}_cast"),
            helper.make_node("Mul", [f"{name}_float", f"{name}_scales"], [product], name=f"{name}_output_scale_mul"),
        ]
        if bias:
            out.append(helper.make_node("Add", [product, bias], [node.output[0]], name=f"{name}_bias"))
        count += 1
    return out, count, kept


def _hierarchy(node, key: str) -> list[str]:
    """One of the lists the ONNX exporter records on ``node`` (``pkg.torch.onnx.class_hierarchy``: qualified
    class names; ``pkg.torch.onnx.name_scopes``: module paths, outermost first); empty when absent."""
    for prop in node.metadata_props:
        if prop.key == key:
            try:
                names = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return []
            return [name for name in names if isinstance(name, str)]
    return []


def in_blocks(node, blocks: frozenset[str]) -> bool:
    """Whether the ONNX exporter recorded ``node`` as run inside one of ``blocks``: a bare class name
    (``Wav2Vec2BertFeatureProjection``, matched against its class hierarchy) or a module path
    (``model.encoder.encoder.layers.3``, matched against its name scopes and theirs below it)."""
    if not blocks:
        return False
    if any(name.rsplit(".", 1)[-1] in blocks for name in _hierarchy(node, "pkg.torch.onnx.class_hierarchy")):
        return True
    paths = [b for b in blocks if "." in b]
    scopes = _hierarchy(node, "pkg.torch.onnx.name_scopes") if paths else []
    return any(scope == b or scope.startswith(b + ".") for scope in scopes for b in paths)


def _unit(node) -> str | None:
    """The block a quantisable MatMul belongs to, for a per-block search: its innermost ``...layers.<i>``
    module (an encoder or adapter layer), else the module just below the model's root."""
    scopes = [s for s in _hierarchy(node, "pkg.torch.onnx.name_scopes") if s]
    layers = [s for s in scopes if re.search(r"\.layers\.\d+$", s)]
    if layers:
        return layers[-1]
    below = [s for s in scopes if s.count(".") >= 1]
    return below[0] if below else (scopes[-1] if scopes else None)


def quantisable_blocks(path: str | Path, keep_fp32: Sequence[str] = KEEP_FP32) -> list[str]:
    """The blocks (module paths, in graph order) whose MatMul weights :func:`quantize_onnx` would quantise with
    ``keep_fp32`` kept: what a search for the layers to keep fp32 chooses from."""
    require("onnx", needed_by="listing an ONNX file's quantisable blocks", hint=ONNX_HINT)
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    weights, keep = _Weights(model.graph, Path(path).parent), frozenset(keep_fp32)
    units: dict[str, None] = {}
    for node in model.graph.node:
        b = node.input[1] if len(node.input) > 1 else ""
        if node.op_type in ("MatMul", "Gemm") and weights.is_float_matrix(b) and not in_blocks(node, keep):
            if (unit := _unit(node)) is not None:
                units[unit] = None
    return list(units)


def _attr(node, name: str, default: float) -> float:
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _plain_gemm(node) -> bool:
    """A ``Gemm`` that is ``A @ op(B) + C``: alpha = beta = 1, A not transposed."""
    return _attr(node, "alpha", 1.0) == 1.0 and _attr(node, "beta", 1.0) == 1.0 and _attr(node, "transA", 0) == 0


def count_matmuls(path: str | Path) -> dict[str, int]:
    """Read off an ONNX file's graph (subgraphs included) which matrix products run as integer kernels.

    Returns ``integer`` (``MatMulInteger`` / ``DynamicQuantizeMatMul`` / ``QLinearMatMul``: int8 weights),
    ``float_weights`` (a plain ``MatMul`` or ``Gemm`` on a weight initializer or constant: could have
    been quantised, stayed float) and ``float_activations`` (a ``MatMul`` of two activations, e.g.
    attention scores, which dynamic weight quantisation leaves float by design).  A graph whose
    ``DequantizeLinear`` was folded back into float weights counts as float here, as it runs.
    """
    require("onnx", needed_by="counting an ONNX file's MatMuls", hint=ONNX_HINT)
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts = {"integer": 0, "float_weights": 0, "float_activations": 0}

    def visit(graph) -> None:
        constants = {i.name for i in graph.initializer} | {
            o for n in graph.node if n.op_type == "Constant" for o in n.output
        }
        for node in graph.node:
            if node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul"):
                counts["integer"] += 1
            elif node.op_type in ("MatMul", "Gemm"):
                counts["float_weights" if node.input[1] in constants else "float_activations"] += 1
            for attr in node.attribute:
                for sub in [attr.g, *attr.graphs] if attr.type in (5, 10) else []:  # GRAPH, GRAPHS
                    visit(sub)

    visit(model.graph)
    return counts
