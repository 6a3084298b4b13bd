"""The "openvino" format: the fp32 ONNX program as OpenVINO IR, exported from the tiny demo, verified by the
exporter and checked here against HF extractor + eager model independently of it.

Skips cleanly without openvino (the ``[openvino]`` extra) or the ``[onnx]`` extra it is converted through.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import _NO_W2VLAB

from w2vlab._contract import (
    FILES,
    ArtifactError,
    InputError,
    MissingDependencyError,
    onnx_available,
    openvino_sha256,
    read_embedded_metadata,
)
from w2vlab._parity import ParityBounds, compare

pytest.importorskip("openvino")
if not onnx_available():
    pytest.skip("the openvino format is converted from ONNX: needs the [onnx] extra", allow_module_level=True)

import w2vlab  # noqa: E402
from w2vlab._audio import read_audio  # noqa: E402
from w2vlab.export._pipeline import export  # noqa: E402
from w2vlab.export._suite import build_suite  # noqa: E402
from w2vlab.model._checkpoint import feature_extractor_for, load_speaker_encoder  # noqa: E402

XML = FILES["openvino", "preprocessed"]
BIN = XML.removesuffix(".xml") + ".bin"
CASES = build_suite(lengths=(560, 16160, 40037), batches=((16160, 8000, 561),))  # 6 clips
FP32 = ParityBounds(0.99999, 3e-5)  # cosine, max|diff| / max|ref|: the onnx format's fp32 bounds


@pytest.fixture(scope="module")
def exported(tiny_dir, tmp_path_factory):
    """pooling -> (artifact directory, ExportResult) of the tiny demo, TorchScript + OpenVINO IR, preprocessed."""
    base, out = tmp_path_factory.mktemp("openvino"), {}
    for pooling in ("masked", "toolkit"):
        formats = ("torchscript", "openvino")
        out[pooling] = (
            base / pooling,
            export(tiny_dir, base / pooling, formats=formats, cases=CASES, progress=False, pooling=pooling),
        )
    return out


@pytest.fixture(scope="module")
def eager(tiny_dir):
    loaded = load_speaker_encoder(tiny_dir, pooling="masked")
    return loaded.model.eval(), feature_extractor_for(loaded)


def _eager_embedding(model, fe, wave: np.ndarray) -> torch.Tensor:
    hf = fe(wave, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    with torch.inference_mode():
        return model(hf["input_features"], hf["attention_mask"])  # [1, D]


def test_metadata_lists_it_verified_within_fp32_bounds(exported):
    out, result = exported["masked"]
    entry = result.metadata["artifacts"]["preprocessed"]["formats"]["openvino"]
    assert (entry["file"], entry["weights"]) == (XML, BIN)
    parity = entry["parity"]
    assert parity["passed"] and parity["n_clips"] == 6 and not parity["failures"]
    assert parity["bounds"]["min_cosine"] >= FP32.min_cosine and parity["bounds"]["max_rel_diff"] <= FP32.max_rel_diff
    assert parity["bounds"]["max_abs_diff"] is None
    assert (
        json.loads((out / "metadata.json").read_text())
        == result.metadata
        == read_embedded_metadata(out / XML, "openvino")
    )
    # the hash recorded before the metadata went in is the file's now: the metadata element is not hashed
    assert openvino_sha256(out / XML) == entry["content_sha256"]
    assert not list(out.glob(".fp32_*")), "the hidden fp32 ONNX source must not stay"


def test_embeddings_match_eager_on_hf_features(exported, eager, speech_files):
    """Independent of the exporter's check: eager on HF's features vs the loaded IR, on recorded speech."""
    out, _ = exported["masked"]
    model, fe = eager
    artifact = w2vlab.load_artifact(out, "preprocessed", format="openvino")
    compared = []
    for path in speech_files:
        wave, sr = read_audio(path)
        if sr != 16000 or wave.ndim != 1:  # the eager reference takes 16 kHz mono as it is
            continue
        ref = _eager_embedding(model, fe, wave)
        got = artifact.embed(wave, sr)[None]
        cosine = torch.nn.functional.cosine_similarity(ref, got).item()
        rel = ((ref - got).abs().max() / ref.abs().max()).item()
        assert cosine >= 0.99999 and rel <= 3e-5, (path.name, cosine, rel)
        compared.append(path.name)
    assert len(compared) >= 3, compared


def test_ir_weights_are_f32(exported):
    xml = (exported["masked"][0] / XML).read_text()
    types = set(re.findall(r'<layer[^>]*type="Const"[^>]*>\s*<data[^>]*element_type="(\w+)"', xml))
    assert "f32" in types and not {"f16", "bf16"} & types, types
    assert 'element_type="f16"' not in xml and "compressed_to_fp16" not in xml


def test_changed_weight_byte_changes_the_hash_and_load_refuses(exported, tmp_path):
    out = shutil.copytree(exported["masked"][0], tmp_path / "art")
    recorded = json.loads((out / "metadata.json").read_text())["artifacts"]["preprocessed"]["formats"]["openvino"]
    data = bytearray((out / BIN).read_bytes())
    data[len(data) // 2] ^= 0x01
    (out / BIN).write_bytes(bytes(data))
    assert openvino_sha256(out / XML) != recorded["content_sha256"]
    with pytest.raises(ArtifactError, match="content does not match"):
        w2vlab.load_artifact(out, "preprocessed", format="openvino")


def test_changed_graph_changes_the_hash(exported, tmp_path):
    out = shutil.copytree(exported["masked"][0], tmp_path / "art")
    before = openvino_sha256(out / XML)
    xml = (out / XML).read_text()
    assert xml.count('type="Add"') >= 1
    (out / XML).write_text(xml.replace('type="Add"', 'type="Subtract"', 1))
    assert openvino_sha256(out / XML) != before


def test_without_openvino_the_export_says_what_to_install(tiny_dir, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else find_spec(name, *a)
    )
    with pytest.raises(MissingDependencyError, match=re.escape('pip install "w2vlab[openvino]"')):
        export(tiny_dir, tmp_path / "art", formats=("openvino",), progress=False)
    assert not (tmp_path / "art").exists()


def test_missing_weights_file_is_a_clear_error(exported, tmp_path):
    out = shutil.copytree(exported["masked"][0], tmp_path / "art")
    (out / BIN).unlink()
    with pytest.raises(ArtifactError, match=rf"needs its weights file {re.escape(BIN)} beside it"):
        w2vlab.load_artifact(out, "preprocessed", format="openvino")


def test_waveform_mode_is_refused_before_any_work(tiny_dir, tmp_path):
    with pytest.raises(InputError, match="preprocessed"):
        export(tiny_dir, tmp_path / "art", modes=("waveform",), formats=("openvino",), progress=False)
    assert not (tmp_path / "art").exists()


# conftest's prelude (w2vlab fails to import), and torch absent as far as transformers can tell (find_spec says
# None, import fails)
_NO_TORCH_NO_W2VLAB = _NO_W2VLAB + 'sys.modules["torch"] = None\n'


@pytest.mark.parametrize("pooling", ["masked", "toolkit"])
def test_card_snippet_runs_without_torch_and_matches_eager(exported, tiny_dir, pooling, tmp_path):
    out, result = exported[pooling]
    card = (out / "README.md").read_text().replace('"w2vbert_speaker/', f'"{out}/')
    blocks = [b.split("```", 1)[0] for b in card.split("```python\n")[1:] if "import openvino" in b.split("```", 1)[0]]
    assert len(blocks) == 1, blocks
    code = (
        _NO_TORCH_NO_W2VLAB
        + blocks[0]
        + (
            "\nassert sys.modules['torch'] is None and 'w2vlab' not in sys.modules"
            f"\nnp.save({str(tmp_path / 'e.npy')!r}, embedding)"
            f"\nnp.save({str(tmp_path / 'w.npy')!r}, wave)"
        )
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=120)
    got, wave = torch.from_numpy(np.load(tmp_path / "e.npy"))[None], np.load(tmp_path / "w.npy")
    loaded = load_speaker_encoder(tiny_dir, pooling=pooling)
    fe = feature_extractor_for(loaded)
    ref = _eager_embedding(loaded.model.eval(), fe, wave)  # the eager model pools as ``pooling`` says
    assert compare(ref, got, bounds=FP32).passed
