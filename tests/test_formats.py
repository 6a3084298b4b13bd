"""torch.export (.pt2) and ONNX files: reloaded from disk, compared with HF extractor + eager model.

Each program is captured once per module (capture and ONNX conversion take seconds each); the
ONNX tests skip cleanly without the optional ``[onnx]`` extra.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from transformers import SeamlessM4TFeatureExtractor

import w2vlab
from w2vlab._contract import FILES as FORMAT_FILES
from w2vlab._contract import read_embedded_metadata as read_metadata
from w2vlab._features import FeatureConfig
from w2vlab._parity import compare, format_bounds
from w2vlab.export._formats import export_onnx, export_program
from w2vlab.export._suite import Case, build_suite, hf_features, synthetic_speech, verify
from w2vlab.export._torchscript import compile_core, save_script, wrap
from w2vlab.model._config import W2VBERT_PREPROCESSOR
from w2vlab.model._demo import build_demo_model
from w2vlab.runtime._entry import Core, waveform_encoder
from w2vlab.runtime._loaders import load_format

FE = SeamlessM4TFeatureExtractor(**W2VBERT_PREPROCESSOR)
CONFIG = FeatureConfig.from_extractor(FE)
# Single clips from 560 samples (the extractor's minimum, below the waveform programs' 720) to
# 3 s, two with an odd frame count (720: 3 frames, 8160: 49), and one padded batch with a
# 561-sample clip in it.
CASES = build_suite(lengths=(560, 561, 719, 720, 8160, 16000, 48037), batches=((16160, 8000, 561),))
METADATA = json.dumps({"format": "w2vlab-artifact/1", "note": "round trip"})


@pytest.fixture(scope="module")
def models():
    return {"dense": build_demo_model()[0], "pruned": build_demo_model(pruned=True)[0]}


@pytest.fixture(scope="module")
def programs(models, tmp_path_factory):
    """(variant, mode) -> (captured program, path of the saved .pt2)."""
    directory = tmp_path_factory.mktemp("pt2")
    out = {}
    for variant, model in models.items():
        for mode in ("preprocessed", "waveform"):
            path = directory / f"{variant}_{FORMAT_FILES['exported', mode]}"
            out[variant, mode] = export_program(model, mode, CONFIG, path, METADATA), path
    return out


@pytest.fixture(scope="module")
def loaded(programs):
    """(variant, mode) -> the reloaded .pt2, called like the TorchScript artifact."""
    return {key: load_format(path, "exported", key[1]) for key, (_, path) in programs.items()}


@pytest.fixture(scope="module")
def onnx_files(programs, tmp_path_factory):
    """(variant, mode) -> .onnx path, converted from the captured programs (no second capture)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    directory = tmp_path_factory.mktemp("onnx")
    out = {}
    for key in (("pruned", "preprocessed"), ("dense", "waveform")):  # ~6 s each; the report has all four
        out[key] = directory / f"{key[0]}_{FORMAT_FILES['onnx', key[1]]}"
        export_onnx(programs[key][0], key[1], CONFIG, out[key], METADATA)
    return out


def _passes(report, cosine=0.99999, max_abs=1e-5):
    return report.worst_cosine >= cosine and report.worst_max_abs_diff <= max_abs


# --------------------------------------------------------------------------- .pt2


@pytest.mark.parametrize("variant", ["dense", "pruned"])
def test_reloaded_program_is_exact_at_batch_one(models, loaded, variant):
    model, program = models[variant], loaded[variant, "preprocessed"]
    g = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        for frames in (1, 2, 3, 4, 49, 50, 123, 255, 499):  # odd and even row counts
            x = torch.randn(1, frames, 160, generator=g)
            assert torch.equal(program(x), model(x)), frames  # max|diff| == 0: the same kernels
            assert torch.equal(program(x, torch.ones(1, frames, dtype=torch.long)), model(x)), frames


@pytest.mark.parametrize("variant", ["dense", "pruned"])
def test_reloaded_program_padded_batch_matches_clips_alone(models, loaded, variant):
    model, program = models[variant], loaded[variant, "preprocessed"]
    case = Case("batch", tuple(synthetic_speech(n, seed=i) for i, n in enumerate((16160, 561, 40080, 8000))))
    with torch.inference_mode():
        together = program(*hf_features(FE, case))
        alone = torch.cat([model(*hf_features(FE, Case("one", (w,)))) for w in case.waves])
    assert _passes(compare(alone, together), max_abs=1e-5)  # masking: padding changes only rounding


@pytest.mark.parametrize("variant", ["dense", "pruned"])
def test_reloaded_waveform_program_matches_hf_plus_eager(models, loaded, variant):
    report = verify("waveform", loaded[variant, "waveform"], models[variant], FE, CASES, progress=False)
    assert _passes(report, 0.99999, 1e-5), report  # the torch frontend's own distance from HF


def test_reloaded_waveform_program_equals_eager_frontend(models, loaded):
    """From 720 samples up the program is the eager frontend + model, bit for bit."""
    model = models["pruned"]
    eager = waveform_encoder(Core(model), CONFIG).eval()
    program = loaded["pruned", "waveform"]
    waves = torch.stack([torch.from_numpy(synthetic_speech(16160, seed=s)) for s in range(3)])  # (3, N)
    with torch.inference_mode():
        for n in (720, 1039, 16160):
            assert torch.equal(program(waves[:1, :n]), eager(waves[:1, :n])), n
        lengths = torch.tensor([16160, 8000, 721])
        assert torch.equal(program(waves, lengths), eager(waves, lengths))


def test_programs_check_inputs_like_the_artifact(loaded):
    preprocessed, waveform = loaded["dense", "preprocessed"], loaded["dense", "waveform"]
    with pytest.raises(ValueError, match=r"\[batch, frames, 160\]"):
        preprocessed(torch.randn(1, 10, 80))
    with pytest.raises(ValueError, match="attention_mask must be"):
        preprocessed(torch.randn(1, 10, 160), torch.ones(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="fewer than the minimum of 560"):
        waveform(torch.zeros(1, 559))
    with pytest.raises(ValueError, match="divide 16-bit PCM by 32768"):
        waveform(torch.zeros(1, 1000, dtype=torch.int16))
    with pytest.raises(ValueError, match="a clip has 500 valid samples"):
        waveform(torch.zeros(2, 1000), torch.tensor([1000, 500]))
    preprocessed.eval()  # an exported program refuses train()/eval(); the wrapper must not pass it on


def test_program_metadata_round_trip(programs):
    assert read_metadata(programs["dense", "preprocessed"][1], "exported") == json.loads(METADATA)


def test_load_format_reads_torchscript_too(models, tmp_path):
    model = models["dense"]
    path = tmp_path / FORMAT_FILES["torchscript", "preprocessed"]
    save_script(wrap("preprocessed", compile_core(model, 160)[0], CONFIG, "masked"), path)
    x = torch.randn(1, 77, 160)
    with torch.inference_mode():
        assert torch.equal(load_format(path, "torchscript", "preprocessed")(x), model(x))


# --------------------------------------------------------------------------- ONNX


def test_onnx_preprocessed_matches_eager(models, onnx_files):
    model = models["pruned"]
    session = load_format(onnx_files["pruned", "preprocessed"], "onnx", "preprocessed", threads=2)
    report = verify("preprocessed", session, model, FE, CASES, progress=False)
    assert _passes(report, 0.99999, 1e-5), report  # measured ~3e-7: ONNX Runtime's kernels
    g = torch.Generator().manual_seed(2)
    with torch.inference_mode():
        x = [torch.randn(1, frames, 160, generator=g) for frames in (1, 3, 499)]
        assert _passes(compare(torch.cat([model(v) for v in x]), torch.cat([session(v) for v in x])), max_abs=1e-5)


def test_onnx_waveform_matches_hf_plus_eager(models, onnx_files):
    session = load_format(onnx_files["dense", "waveform"], "onnx", "waveform", threads=2)
    report = verify(
        "waveform", session, models["dense"], FE, CASES, progress=False, bounds=format_bounds("onnx", "waveform")
    )
    assert report.passed and report.worst_cosine >= 0.99999, report
    # ONNX Runtime's DFT rounds low-energy bins differently from pocketfft: log-mels differ by an
    # ulp in ~5% of values, which normalisation amplifies on 2-3 frame clips.  Longer ones: 1e-5.
    longer = [c for c in report.clips if c.name.startswith("batch") or int(c.name.split("_")[1]) >= 8000]
    assert max(c.max_abs_diff for c in longer) <= 1e-5, report


def test_onnx_names_axes_and_metadata(onnx_files):
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(onnx_files["dense", "waveform"]))
    shapes = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*model.graph.input, *model.graph.output)
    }
    assert shapes == {"waveform": ["batch", "samples"], "lengths": ["batch"], "embedding": ["batch", 32]}
    assert {p.key: p.value for p in model.metadata_props}["w2vlab_metadata"] == METADATA
    assert read_metadata(onnx_files["pruned", "preprocessed"], "onnx") == json.loads(METADATA)


def _machine_paths(data: bytes) -> list[str]:
    """The install folders of torch and w2vlab on this machine that ``data`` names."""
    roots = {str(Path(module.__file__).resolve().parent) for module in (torch, w2vlab)}
    return [root for root in roots if root.encode() in data]


def test_onnx_files_name_no_path_of_the_exporting_machine(onnx_files):
    """The exporter's per-node stack traces named this machine's files (torch's and w2vlab's
    install folders), so the file said where it was made and its content hash depended on it:
    no byte of either file names them now, and the module names :mod:`w2vlab.export._int8` reads stay."""
    onnx = pytest.importorskip("onnx")
    for path in onnx_files.values():
        assert not _machine_paths(path.read_bytes()), path.name
        keys = {p.key for node in onnx.load(str(path)).graph.node for p in node.metadata_props}
        assert "pkg.torch.onnx.class_hierarchy" in keys and "pkg.torch.onnx.stack_trace" not in keys, keys


def test_pt2_files_name_no_path_of_the_exporting_machine(programs):
    """Same for the .pt2 archives' graph (``model.json`` held a stack trace per node)."""
    import zipfile

    for _, path in programs.values():
        with zipfile.ZipFile(path) as archive:
            named = {name: _machine_paths(archive.read(name)) for name in archive.namelist()}
        assert not {name: roots for name, roots in named.items() if roots}, path.name


def test_onnx_export_lets_go_of_the_model_weights(tmp_path):
    """Nothing the ONNX exporter leaves behind (onnxscript's module-level rewrite rules kept the last
    graph they matched) holds the model's weights once the caller drops the model: at full size
    that was 2.1 GB for the rest of the export."""
    import gc
    import weakref

    pytest.importorskip("onnxscript")
    model = build_demo_model()[0]
    weights = [weakref.ref(p) for p in model.parameters()]
    export_onnx(model, "preprocessed", CONFIG, tmp_path / "m.onnx")
    del model
    gc.collect()
    alive = sum(ref() is not None for ref in weights)
    assert alive == 0, f"{alive} of {len(weights)} weights outlived the export"


def test_onnx_without_the_extra_says_what_to_install(models, tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r"pip install -e '\.\[onnx\]'"):
        export_onnx(models["dense"], "preprocessed", CONFIG, tmp_path / "m.onnx")
    with pytest.raises(ImportError, match="onnxruntime"):
        load_format(tmp_path / "m.onnx", "onnx", "preprocessed")


def _hand_made_onnx():
    """A one-node model whose initializers are stored every way the hash must read: raw bytes
    (float32, int8, int64, bool), typed fields (``float_data``) and an empty tensor; two metadata_props."""
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.integers(-128, 127, (40, 40), dtype=np.int8), "q"),
        numpy_helper.from_array(np.arange(300, dtype=np.int64), "idx"),
        numpy_helper.from_array(rng.random(2000) > 0.5, "flags"),
        helper.make_tensor("typed", TensorProto.FLOAT, [3], [1.0, -2.5, 3.25]),
        numpy_helper.from_array(np.zeros((0, 4), np.float32), "empty"),
    ]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 32])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"w2vlab_metadata": METADATA, "other": "x" * 300})
    return onnx, model


def test_onnx_hash_reads_stored_bytes_the_way_numpy_would(tmp_path):
    """:func:`onnx_sha256` hashes each initializer from its bytes as stored, never through numpy; a
    reference that converts every one with ``numpy_helper.to_array`` gives the same digest, inline and with the
    weights in an external data file; one changed value changes it."""
    import hashlib

    from onnx import numpy_helper

    from w2vlab._contract import onnx_sha256

    onnx, model = _hand_made_onnx()

    def reference(m):
        digest = hashlib.sha256()
        for proto in (*m.graph.input, *m.graph.output, *m.graph.node):
            digest.update(proto.SerializeToString(deterministic=True))
        for init in sorted(m.graph.initializer, key=lambda i: i.name):
            t = torch.from_numpy(numpy_helper.to_array(init).copy())
            digest.update(f"{init.name}|{t.dtype}|{tuple(t.shape)}|".encode() + t.numpy().tobytes())
        return digest.hexdigest()

    want = reference(model)
    onnx.save_model(model, str(tmp_path / "inline.onnx"))
    onnx.save_model(
        model,
        str(tmp_path / "external.onnx"),
        save_as_external_data=True,
        location="external.onnx.data",
        size_threshold=0,
    )  # moves the model's weights out, in memory too
    assert onnx.load(str(tmp_path / "external.onnx"), load_external_data=False).graph.initializer[0].external_data
    assert onnx_sha256(tmp_path / "inline.onnx") == want
    assert onnx_sha256(tmp_path / "external.onnx") == want
    with open(tmp_path / "external.onnx.data", "r+b") as f:  # the first stored byte: the float32 weight's
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 1]))
    assert onnx_sha256(tmp_path / "external.onnx") != want


def test_onnx_metadata_is_read_without_parsing_the_graph(tmp_path):
    from w2vlab._contract import onnx_metadata_props

    onnx, model = _hand_made_onnx()
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path))
    assert onnx_metadata_props(path) == {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert read_metadata(path, "onnx") == json.loads(METADATA)
    data = path.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[:-10])  # the last field, a metadata entry, is cut short
    with pytest.raises(ValueError, match="is truncated"):
        onnx_metadata_props(tmp_path / "cut.onnx")
    (tmp_path / "text.onnx").write_text("not a model\n" * 10)
    with pytest.raises(ValueError, match="not an ONNX model|truncated"):
        onnx_metadata_props(tmp_path / "text.onnx")
