"""w2vlab.export._int8 against its reference, ONNX Runtime's own ``quantize_dynamic``: the same int8 weights,
the same graph, the same outputs, from inline or external weights."""

from __future__ import annotations

import collections
import json
import logging
import shutil

import numpy as np
import pytest

from w2vlab._contract import FILES, METADATA_FILE, MODES, onnx_available

pytestmark = pytest.mark.skipif(not onnx_available(), reason="the [onnx] extra is not installed")


def ort_quantize(source, path, nodes_to_exclude=()) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # it warns about pre-processing on the root logger
    try:
        quantize_dynamic(
            str(source),
            str(path),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=list(nodes_to_exclude),
        )
    finally:
        root.setLevel(level)


def quantised_tensors(path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return {
        init.name: numpy_helper.to_array(init)
        for init in model.graph.initializer
        if init.name.endswith(("_quantized", "_scale", "_zero_point"))
    }


def op_counts(path) -> collections.Counter:
    import onnx

    return collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def run(path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Every output of the ONNX file at ``path`` on ``feeds``, on one thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options).run(None, feeds)


def model_feeds(mode: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if mode == "preprocessed":
        mask = np.ones((2, 90), np.int32)  # the extractor's dtype, which the programs take
        mask[1, 60:] = 0
        return {"input_features": rng.standard_normal((2, 90, 160)).astype(np.float32), "attention_mask": mask}
    return {
        "waveform": (0.1 * rng.standard_normal((2, 20000))).astype(np.float32),
        "lengths": np.array([20000, 12345], np.int64),
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("external", [False, True], ids=["inline", "external-data"])
def test_same_graph_weights_and_outputs_as_onnxruntime(tiny_all_formats, tmp_path, mode, external):
    import onnx

    from w2vlab.export._int8 import quantize_onnx

    art, formats, _ = tiny_all_formats
    source = tmp_path / "fp32.onnx"
    if external:  # the layout of a full-size file: weights in fp32.onnx.data, read one at a time
        onnx.save_model(
            onnx.load(str(art / FILES["onnx", mode])),
            str(source),
            save_as_external_data=True,
            location="fp32.onnx.data",
            size_threshold=1024,
        )
        assert (tmp_path / "fp32.onnx.data").stat().st_size > 100_000
    else:
        shutil.copy(art / FILES["onnx", mode], source)
    quantize_onnx(source, tmp_path / "ours.onnx", keep_fp32=())  # every MatMul, as quantize_dynamic does
    ort_quantize(source, tmp_path / "ort.onnx")

    ours, theirs = quantised_tensors(tmp_path / "ours.onnx"), quantised_tensors(tmp_path / "ort.onnx")
    assert sorted(ours) == sorted(theirs)
    assert (
        len([name for name in ours if name.endswith("_quantized")]) >= 20
    )  # the MatMul weights and the bottleneck Gemm
    for name, tensor in theirs.items():
        assert ours[name].dtype == tensor.dtype and np.array_equal(ours[name], tensor), name
    assert op_counts(tmp_path / "ours.onnx") == op_counts(tmp_path / "ort.onnx")
    data = tmp_path / "ours.onnx.data"  # the int8 weights, beside the graph (what a consumer opens fastest)
    graph = onnx.load(str(tmp_path / "ours.onnx"), load_external_data=False).graph
    big = [i for i in graph.initializer if np.prod(i.dims) >= 1024]  # onnx keeps smaller tensors inline
    assert len(big) >= 20 and all(i.data_location == i.EXTERNAL for i in big)
    size = data.stat().st_size
    quantize_onnx(source, tmp_path / "ours.onnx", keep_fp32=())  # again, over it: the data file is rewritten
    assert data.stat().st_size == size
    feeds = model_feeds(mode)
    got, want, fp32 = (run(tmp_path / name, feeds)[0] for name in ("ours.onnx", "ort.onnx", "fp32.onnx"))
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, fp32)  # it did quantise


@pytest.mark.parametrize("mode", MODES)
def test_conv_block_and_feature_projection_matmuls_stay_fp32(tiny_all_formats, tmp_path, mode):
    """The shipped recipe leaves the conv block's pointwise MatMuls and the feature projection's MatMul fp32
    (full size refused each quantised): the same file as quantize_dynamic told to exclude the nodes whose
    exporter scope (the ``namespace`` entry, not the class list w2vlab.export._int8 reads) is a
    ``conv_module`` or the ``feature_projection``."""
    import onnx

    from w2vlab.export._int8 import quantize_onnx

    art, _, _ = tiny_all_formats
    source = art / FILES["onnx", mode]
    graph = onnx.load(str(source)).graph
    inits = {init.name for init in graph.initializer}
    scope = {
        node.name: next(p.value for p in node.metadata_props if p.key == "namespace")
        for node in graph.node
        if node.op_type == "MatMul" and node.input[1] in inits
    }
    in_conv = [name for name, ns in scope.items() if ".conv_module:" in ns]
    in_projection = [name for name, ns in scope.items() if ".feature_projection:" in ns]
    layers = json.loads((art / METADATA_FILE).read_text())["model"]["encoder_config"]["num_hidden_layers"]
    assert layers >= 2 and len(in_conv) == 2 * layers  # pointwise_conv1 and pointwise_conv2, folded to initializers
    assert len(in_projection) == 1  # 160 -> hidden, on the raw features
    quantize_onnx(source, tmp_path / "ours.onnx")
    ort_quantize(source, tmp_path / "ort.onnx", nodes_to_exclude=in_conv + in_projection)
    ours, theirs = quantised_tensors(tmp_path / "ours.onnx"), quantised_tensors(tmp_path / "ort.onnx")
    assert sorted(ours) == sorted(theirs) and len(ours) >= 3 * 20
    assert op_counts(tmp_path / "ours.onnx") == op_counts(tmp_path / "ort.onnx")
    assert op_counts(tmp_path / "ours.onnx")["MatMul"] >= len(in_conv) + len(in_projection)
    feeds = model_feeds(mode)
    np.testing.assert_array_equal(run(tmp_path / "ours.onnx", feeds)[0], run(tmp_path / "ort.onnx", feeds)[0])


def handmade(tmp_path, opset: int = 17):
    """y = relu(x @ W1 + b) @ W2 ... a Gemm (transB, bias), a Gemm without either, two MatMuls sharing
    one weight and one input, and a float64 MatMul that stays as it is: x [4, 8] -> 4 outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = {
        name: rng.standard_normal(shape).astype(np.float32)
        for name, shape in (("W_nk", (6, 8)), ("W_kn", (8, 6)), ("W_shared", (8, 5)))
    }
    w["W_zero"] = np.zeros((8, 3), np.float32)  # an all-zero column block: scale 1, not 0
    inits = [numpy_helper.from_array(array, name) for name, array in w.items()]
    inits += [
        numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "bias"),
        numpy_helper.from_array(rng.standard_normal((8, 2)), "W64"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "W_nk", "bias"], ["g1"], transB=1),
        helper.make_node("Gemm", ["x", "W_kn"], ["g2"]),
        helper.make_node("MatMul", ["x", "W_shared"], ["m1"]),
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("MatMul", ["r", "W_shared"], ["m2"]),
        helper.make_node("MatMul", ["x", "W_zero"], ["z"]),
        helper.make_node("Cast", ["x"], ["x64"], to=TensorProto.DOUBLE),
        helper.make_node("MatMul", ["x64", "W64"], ["d"]),
    ]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("g1", "g2", "m1", "m2", "z")]
    outs.append(helper.make_tensor_value_info("d", TensorProto.DOUBLE, None))
    graph = helper.make_graph(
        nodes, "handmade", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])], outs, inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / f"handmade_{opset}.onnx"
    onnx.save_model(model, str(path))
    return path


def test_gemm_shared_weights_and_other_dtypes_as_onnxruntime_does(tmp_path):
    from w2vlab.export._int8 import quantize_onnx

    source = handmade(tmp_path)
    quantize_onnx(source, tmp_path / "ours.onnx")
    ort_quantize(source, tmp_path / "ort.onnx")
    ours, theirs = quantised_tensors(tmp_path / "ours.onnx"), quantised_tensors(tmp_path / "ort.onnx")
    assert sorted(ours) == sorted(theirs)
    for name, tensor in theirs.items():
        assert np.array_equal(ours[name], tensor), name
    counts = op_counts(tmp_path / "ours.onnx")
    assert counts["MatMulInteger"] == 5 and counts["DynamicQuantizeLinear"] == 2  # x and r, once each
    assert counts["Gemm"] == 0 and counts["MatMul"] == 1  # the float64 one
    assert np.all(ours["W_zero_scale"] == 1.0)
    x = {"x": np.random.default_rng(2).standard_normal((4, 8)).astype(np.float32)}
    got, want = run(tmp_path / "ours.onnx", x), run(tmp_path / "ort.onnx", x)
    assert len(got) == len(want) == 6
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_weight_quantisation_is_symmetric_per_output_channel():
    from w2vlab.export._int8 import quantize_weight

    w = np.array([[1.0, -0.5, 0.0], [-2.54, 0.3, 0.0]], np.float32)  # [K=2, N=3]
    q, scale = quantize_weight(w)
    np.testing.assert_allclose(scale, [2.54 / 127, 0.5 / 127, 1.0], rtol=1e-6)
    assert q.dtype == np.int8 and q[1, 0] == -127 and q[0, 1] == -127 and q[0, 0] == 50 and q[1, 1] == 76
    assert np.all(q[:, 2] == 0)


def test_old_opset_is_refused_before_writing(tmp_path):
    from w2vlab.export._int8 import quantize_onnx

    source = handmade(tmp_path, opset=10)
    with pytest.raises(ValueError, match="opset 10.*needs opset >= 11"):
        quantize_onnx(source, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
