"""``export(formats=...)`` / ``w2vlab export --format``: .pt2 and ONNX files in the artifact directory,
verified at export, checked when opened, and compared here with HF extractor + eager model."""

from __future__ import annotations

import importlib.util
import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from w2vlab._contract import ALL_FORMATS, MODES, ONNX_FORMATS, onnx_available
from w2vlab._contract import FILES as FORMAT_FILES
from w2vlab._parity import ParityBounds, compare
from w2vlab.cli import main
from w2vlab.export._formats import embed_metadata
from w2vlab.export._pipeline import ExportParityError, export
from w2vlab.export._rewrites import ATTENTION, POINTWISE
from w2vlab.export._suite import build_suite, synthetic_speech
from w2vlab.model._checkpoint import feature_extractor_for, load_speaker_encoder
from w2vlab.runtime._artifact import ArtifactError, load_artifact

needs_onnx = pytest.mark.skipif(not onnx_available(), reason="the [onnx] extra is not installed")
CASES = build_suite(lengths=(560, 16160, 40037), batches=((16160, 8000, 561),))
# What a consumer must not load: the exporter, the eager model and transformers' modelling code.
EXPORTER_MODULES = (
    "w2vlab.export._pipeline",
    "w2vlab.model._checkpoint",
    "w2vlab.model._encoder",
    "w2vlab.model._demo",
    "w2vlab.export._suite",
    "w2vlab.export._torchscript",
    "w2vlab.export._formats",
    "w2vlab.export._rewrites",
    "transformers.models.wav2vec2_bert.modeling_wav2vec2_bert",
)
CONSUMER = """
import json, sys
import w2vlab
for fmt in {formats}:
    art = w2vlab.load_artifact({out!r}, {mode!r}, fmt)
    assert art.embed_file({audio!r}).shape == (art.embedding_dim,)
modeling = sorted(m for m in sys.modules if m.startswith("transformers.") and ".modeling_" in m)
print(json.dumps({{"exporter": [m for m in {exporter} if m in sys.modules], "modeling": modeling,
                  "transformers": "transformers" in sys.modules,
                  "w2vlab": sorted(m for m in sys.modules if m.startswith("w2vlab"))}}))
"""


@pytest.fixture(scope="module")
def artifact(tiny_all_formats):
    """Both modes, every format this environment can write (conftest's shared export, verified on CASES)."""
    out, formats, cases = tiny_all_formats
    assert [c.name for c in cases] == [c.name for c in CASES]
    return out, formats


@pytest.fixture(scope="module")
def eager(tiny_dir):
    loaded = load_speaker_encoder(tiny_dir)
    return loaded.model, feature_extractor_for(loaded)


def test_every_format_is_listed_with_its_own_parity(artifact):
    out, formats = artifact
    md = json.loads((out / "metadata.json").read_text())
    for mode in MODES:
        entries = md["artifacts"][mode]["formats"]
        assert sorted(entries) == sorted(formats)
        for fmt, entry in entries.items():
            assert entry["file"] == FORMAT_FILES[fmt, mode] and (out / entry["file"]).is_file()
            assert entry["parity"]["passed"] and entry["parity"]["n_clips"] == 6
            # ONNX files run w2vlab.export._rewrites: the tiny demo's 2 attention and 2 conv blocks
            assert entry.get("rewrites") == ({ATTENTION: 2, POINTWISE: 2} if fmt in ONNX_FORMATS else None), fmt
            if fmt == "onnx-int8":  # its weights beside it, named in the entry and in the card
                assert entry["external_data"] == entry["file"] + ".data" and (out / entry["external_data"]).is_file()
                assert f"`{entry['external_data']}`" in (out / "README.md").read_text()
                assert entry["quantisation"]["kept_fp32"] == [
                    "Wav2Vec2BertConvolutionModule",
                    "Wav2Vec2BertFeatureProjection",
                ]
    parity = json.loads((out / "parity.json").read_text())
    assert sorted(parity["formats"]) == sorted(set(formats) - {"torchscript"})
    assert all(len(parity["formats"][f][m]["clips"]) == 6 for f in parity["formats"] for m in MODES)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging files left
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # nor hidden fp32/staged files inside


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", ALL_FORMATS)  # aoti: tests/test_cpp_consumer.py
def test_loaded_artifact_matches_eager_in_every_format(artifact, eager, fmt, mode):
    out, formats = artifact
    if fmt not in formats:
        pytest.skip("the [onnx] extra is not installed")
    model, fe = eager
    art = load_artifact(out, mode, fmt)
    assert art.format == fmt and art.mode == mode
    waves = [synthetic_speech(n, seed=7 + n) for n in (24000, 9001, 720)]
    with torch.inference_mode():
        want = torch.cat(
            [
                model(
                    **{
                        k: v
                        for k, v in fe(w, sampling_rate=16000, return_tensors="pt", return_attention_mask=True).items()
                    }
                )
                for w in waves
            ]
        )
    got = art.embed_batch(waves, 16000)
    report = compare(want, got)
    if fmt == "onnx-int8":  # a quantised copy: close in angle, not in value (measured cosine ~0.9999)
        assert 0.999 <= report.worst_cosine < 0.999999 and report.worst_max_abs_diff > 1e-4, report
    else:  # ONNX waveform: ONNX Runtime's DFT is not pocketfft (see w2vlab.export._formats); the rest <= 1e-5
        max_abs = 1e-4 if (fmt, mode) == ("onnx", "waveform") else 1e-5
        assert report.worst_cosine >= 0.99999 and report.worst_max_abs_diff <= max_abs, report
    with pytest.raises(ValueError, match="audio too short"):
        art.embed(np.zeros(100, dtype=np.float32), 16000)


def test_exported_preprocessed_is_bit_identical_at_batch_one(artifact, eager):
    model, fe = eager
    art = load_artifact(artifact[0], "preprocessed", "exported")
    for n in (560, 16160, 48000):
        out = fe(synthetic_speech(n, seed=n), sampling_rate=16000, return_tensors="pt")
        with torch.inference_mode():
            assert torch.equal(art.module(out["input_features"]), model(out["input_features"])), n


def test_a_file_from_another_export_is_refused(artifact, tmp_path, tiny_dir):
    out, _ = artifact
    other = tmp_path / "other"
    export(tiny_dir, other, formats=("torchscript", "exported"), cases=CASES[:1], progress=False)
    mixed = tmp_path / "mixed"
    shutil.copytree(out, mixed)
    shutil.copy(other / FORMAT_FILES["exported", "preprocessed"], mixed / FORMAT_FILES["exported", "preprocessed"])
    with pytest.raises(ArtifactError, match="embeds metadata that differs"):
        load_artifact(mixed, "preprocessed", "exported")
    load_artifact(mixed, "preprocessed", "torchscript")  # the other files are still fine


@needs_onnx
def test_edited_embedded_metadata_is_refused(artifact, tmp_path):
    edited = tmp_path / "edited"
    shutil.copytree(artifact[0], edited)
    embed_metadata(edited / FORMAT_FILES["onnx", "waveform"], "onnx", json.dumps({"format": "w2vlab-artifact/2"}))
    with pytest.raises(ArtifactError, match="embeds metadata that differs"):
        load_artifact(edited, "waveform", "onnx")
    with pytest.raises(RuntimeError, match="changed"):  # checked against the hash the file was verified with
        embed_metadata(edited / FORMAT_FILES["onnx", "preprocessed"], "onnx", "{}", verified_sha256="0" * 64)
    with pytest.raises(ValueError, match="already embeds metadata.json"):  # a .pt2 is never edited in place
        embed_metadata(edited / FORMAT_FILES["exported", "waveform"], "exported", "{}")


@needs_onnx
@pytest.mark.parametrize("fmt", ONNX_FORMATS)
def test_an_onnx_file_with_one_weight_changed_is_refused(artifact, tmp_path, fmt):
    """Metadata untouched, one float changed: the content hash refuses the file."""
    import onnx
    from onnx import numpy_helper

    edited = tmp_path / "edited"
    shutil.copytree(artifact[0], edited)
    path = edited / FORMAT_FILES[fmt, "preprocessed"]
    model = onnx.load(str(path))
    init = next(i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and np.prod(i.dims) > 1)
    array = numpy_helper.to_array(init).copy()
    array.flat[0] += 1.0
    init.CopyFrom(numpy_helper.from_array(array, init.name))
    onnx.save_model(model, str(path))
    with pytest.raises(ArtifactError, match="content does not match"):
        load_artifact(edited, "preprocessed", fmt)
    assert (
        load_artifact(artifact[0], "preprocessed", fmt).embed(synthetic_speech(16000, seed=1), 16000).isfinite().all()
    )


def test_a_format_that_was_not_exported_says_how_to_get_it(tmp_path, tiny_dir):
    out = tmp_path / "ts_only"
    export(tiny_dir, out, cases=CASES[:1], progress=False)
    with pytest.raises(ArtifactError, match="--format exported"):
        load_artifact(out, "preprocessed", "exported")
    with pytest.raises(ValueError, match="unknown format 'tflite'"):
        load_artifact(out, "preprocessed", "tflite")
    with pytest.raises(ValueError, match=r"unknown format 'tflite'; expected one of \('torchscript'"):
        export(tiny_dir, tmp_path / "x", formats=("tflite",), progress=False)
    assert not (tmp_path / "x").exists()


@needs_onnx
def test_failed_onnx_parity_writes_nothing(tmp_path, tiny_dir):
    """ONNX Runtime is not bit-exact: held to max|diff| == 0 its file fails and nothing is written,
    although the TorchScript archive passes the same bound."""
    out = tmp_path / "strict"
    with pytest.raises(ExportParityError) as err:
        export(
            tiny_dir,
            out,
            formats=("torchscript", "onnx"),
            cases=CASES[1:2],
            bounds=ParityBounds(0.99999, 0.0),
            progress=False,
        )
    assert [r.label for r in err.value.reports] == ["preprocessed onnx vs eager"]
    assert not out.exists() and not list(tmp_path.iterdir())


def test_onnx_without_the_extra_fails_before_any_work(tmp_path, tiny_dir, monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else find_spec(name, *a)
    )
    args = ["export", "--model-path", str(tiny_dir), "--output", str(tmp_path / "o"), "--format", "onnx"]
    assert main(args) == 2
    assert "pip install -e '.[onnx]'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cli_export_format_then_verify_and_embed(tmp_path, tiny_dir, speech_files, capsys, monkeypatch):
    # the CLI's suites, shortened to this module's (the full 32-clip suites run in test_cli.py)
    monkeypatch.setattr("w2vlab.export._pipeline.build_suite", lambda: CASES)  # export's
    monkeypatch.setattr("w2vlab.export._suite.build_suite", lambda audio=(): CASES)  # verify's
    out = tmp_path / "art"
    assert main(["export", "--model-path", str(tiny_dir), "--output", str(out), "--format", "exported"]) == 0
    printed = capsys.readouterr().out
    assert "preprocessed exported vs eager: PASS" in printed and FORMAT_FILES["exported", "preprocessed"] in printed
    assert main(["verify", str(out), "--model-path", str(tiny_dir)]) == 0
    printed = capsys.readouterr().out
    assert "preprocessed exported vs eager: PASS" in printed and "verify: PASS" in printed
    assert main(["embed", str(out), str(speech_files[0]), "--format", "exported"]) == 0
    pt2 = np.array(capsys.readouterr().out.split()[1:], dtype=np.float32)
    assert main(["embed", str(out), str(speech_files[0])]) == 0
    ts = np.array(capsys.readouterr().out.split()[1:], dtype=np.float32)
    assert np.array_equal(pt2, ts)  # both printed to 6 decimals from bit-identical embeddings


@pytest.mark.parametrize("mode", MODES)
def test_consumer_imports_no_exporter_and_no_modelling_code(artifact, speech_files, mode):
    """A fresh process opens every format of ``mode`` and embeds a file; what did it import?"""
    import subprocess
    import sys

    out, formats = artifact
    code = CONSUMER.format(
        formats=formats, out=str(out), mode=mode, audio=str(speech_files[0]), exporter=EXPORTER_MODULES
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert (
        "w2vlab.runtime._artifact" in loaded["w2vlab"] and "w2vlab.runtime._loaders" in loaded["w2vlab"]
    )  # it did run the consumer
    assert loaded["exporter"] == [] and loaded["modeling"] == [], loaded
    if mode == "waveform":  # the features are computed inside the graph: torch alone
        assert loaded["transformers"] is False, loaded["w2vlab"]


def _code_device_literals(path) -> list[str]:
    """``torch.device("...")`` literals in a TorchScript archive's saved code (read from the zip,
    nothing unpickled); a device that follows the input is saved as ``ops.prim.device(x)``."""
    import re
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return [
            hit
            for name in archive.namelist()
            if "/code/" in name and name.endswith(".py")
            for hit in re.findall(r'torch\.device\("[^"]*"\)', archive.read(name).decode())
        ]


def _program_devices(program) -> set[str]:
    """Devices named in a ``.pt2`` program's graphs (factory ``device=``, ``.to`` asserts) and its state."""
    named = {
        str(v)
        for gm in program.graph_module.modules()
        if isinstance(gm, torch.fx.GraphModule)
        for node in gm.graph.nodes
        for v in (*node.args, *node.kwargs.values())
        if isinstance(v, torch.device)
    }
    return named | {str(t.device) for t in program.state_dict.values()}


@pytest.mark.parametrize("mode", MODES)
def test_torchscript_archives_fix_no_device(artifact, mode):
    """Tracing bakes ``device=x.device`` in as the example's device (HF's relative-position
    ``arange``); the export replaces every such constant, so ``map_location="cuda"`` is enough."""
    from w2vlab.export._torchscript import device_constants
    from w2vlab.runtime._loaders import load_script

    out, _ = artifact
    path = out / FORMAT_FILES["torchscript", mode]
    assert _code_device_literals(path) == []
    assert device_constants(load_script(path)[0]) == []


def test_device_checks_catch_a_plain_trace(eager):
    """The two checks above are not vacuous: a trace without the export's fix carries the constant."""
    import io

    from w2vlab.export._torchscript import device_constants, trace_example, unbake_devices
    from w2vlab.runtime._entry import Core
    from w2vlab.runtime._loaders import quiet_jit

    model, _ = eager
    x, mask = trace_example(160)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' notices while the tracer probes attributes
        plain, fixed = [torch.jit.trace(Core(model).eval(), (x, mask), check_trace=False) for _ in range(2)]
    assert "cpu" in device_constants(plain)
    assert unbake_devices(fixed) >= 2  # two per attention layer
    buffer = io.BytesIO()
    with quiet_jit():
        torch.jit.save(fixed, buffer)
        buffer.seek(0)
        reloaded = torch.jit.load(buffer)
    assert device_constants(reloaded) == []
    with torch.inference_mode():
        assert torch.equal(reloaded(x, mask), model(x, mask))  # values unchanged on the CPU


def test_pt2_is_moved_whole_to_another_device(artifact):
    """A ``.pt2`` names its capture device; ``load_artifact/open_format(device=...)`` moves it
    (``meta`` stands in for a GPU on a machine without one)."""
    from torch.export.passes import move_to_device_pass

    from w2vlab.runtime._loaders import load_format

    out, _ = artifact
    for mode in MODES:
        path = out / FORMAT_FILES["exported", mode]
        assert _program_devices(torch.export.load(str(path))) == {"cpu"}, mode
        assert _program_devices(move_to_device_pass(torch.export.load(str(path)), "meta")) == {"meta"}, mode
    program = load_format(out / FORMAT_FILES["exported", "preprocessed"], "exported", "preprocessed", device="meta")
    embedding = program(torch.zeros(2, 9, 160, device="meta"))  # the default mask follows the input's device
    assert embedding.device.type == "meta" and embedding.shape == (2, 32)


def _card_blocks(out, section: str) -> list[str]:
    from w2vlab.export._card import render_model_card

    card = render_model_card(json.loads((out / "metadata.json").read_text()), dirname=str(out))
    body = card.split(f"## {section}")[1].split("\n## ")[0]
    return [block.split("```", 1)[0] for block in body.split("```python\n")[1:]]


def test_card_program_snippets_run_and_match_eager(artifact, eager):
    """Each ``.pt2`` / ONNX snippet of the model card, run as written (with only torch,
    transformers, onnxruntime), against HF extractor + eager on the snippet's own audio."""
    out, formats = artifact
    model, fe = eager
    blocks = _card_blocks(out, "The `.pt2` and ONNX files")
    assert len(blocks) == 2 * (len(formats) - 1)  # one per mode and non-TorchScript format
    for code in blocks:
        fmt = "onnx-int8" if "_int8.onnx" in code else "onnx" if ".onnx" in code else "exported"
        scope: dict = {}
        exec(code, scope)
        mode = "preprocessed" if "fe" in scope else "waveform"
        wave = scope["wave"] if mode == "preprocessed" else scope["wave"][0].numpy()
        hf = fe(wave, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
        with torch.inference_mode():
            ref = model(hf["input_features"], hf["attention_mask"])
        bounds = ParityBounds(0.999, 0.1) if fmt == "onnx-int8" else ParityBounds(0.99999, 1e-4)
        report = compare(ref, scope["embedding"][None], bounds=bounds)
        assert report.passed, (fmt, mode, report.headline())
