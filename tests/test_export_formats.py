"""``export(formats=...)`` / ``w2vlab export --format``: .pt2 and ONNX files in the artifact directory,
verified at export, checked when opened, and compared here with HF extractor + eager model."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch

from w2vlab.artifact import ArtifactError, load_artifact
from w2vlab.checkpoint import load_speaker_encoder
from w2vlab.cli import main
from w2vlab.export import ExportParityError, export, feature_extractor_for
from w2vlab.formats import FORMAT_FILES, FORMATS, embed_metadata, onnx_available
from w2vlab.parity import ParityBounds, compare
from w2vlab.suite import build_suite, synthetic_speech

needs_onnx = pytest.mark.skipif(not onnx_available(), reason="the [onnx] extra is not installed")
CASES = build_suite(lengths=(560, 16160, 40037), batches=((16160, 8000, 561),))
MODES = ("preprocessed", "waveform")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, tiny_dir):
    """Both modes, every format this environment can write (one export for the whole module)."""
    out = tmp_path_factory.mktemp("formats") / "art"
    formats = FORMATS if onnx_available() else ("torchscript", "exported")
    export(tiny_dir, out, modes=MODES, formats=formats, cases=CASES, progress=False)
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
    parity = json.loads((out / "parity.json").read_text())
    assert sorted(parity["formats"]) == sorted(set(formats) - {"torchscript"})
    assert all(len(parity["formats"][f][m]["clips"]) == 6 for f in parity["formats"] for m in MODES)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging files left
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # nor hidden fp32/staged files inside


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_loaded_artifact_matches_eager_in_every_format(artifact, eager, fmt, mode):
    out, formats = artifact
    if fmt not in formats:
        pytest.skip("the [onnx] extra is not installed")
    model, fe = eager
    art = load_artifact(out, mode, fmt)
    assert art.format == fmt and art.mode == mode
    waves = [synthetic_speech(n, seed=7 + n) for n in (24000, 9001, 720)]
    with torch.inference_mode():
        want = torch.cat([model(**{k: v for k, v in fe(w, sampling_rate=16000, return_tensors="pt",
                                                          return_attention_mask=True).items()}) for w in waves])
    got = art.embed_batch(waves, 16000)
    report = compare(want, got)
    if fmt == "onnx-int8":  # a quantised copy: close in angle, not in value (measured cosine ~0.9999)
        assert 0.999 <= report.worst_cosine < 0.999999 and report.worst_max_abs_diff > 1e-4, report
    else:  # ONNX waveform: ONNX Runtime's DFT is not pocketfft (see w2vlab.formats); the rest <= 1e-5
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
    embed_metadata(edited / FORMAT_FILES["onnx", "waveform"], "onnx", json.dumps({"format": "w2vlab-artifact/1"}))
    with pytest.raises(ArtifactError, match="embeds metadata that differs"):
        load_artifact(edited, "waveform", "onnx")
    with pytest.raises(ValueError, match="already embeds metadata.json"):  # a .pt2 is never edited in place
        embed_metadata(edited / FORMAT_FILES["exported", "waveform"], "exported", "{}")


def test_a_format_that_was_not_exported_says_how_to_get_it(tmp_path, tiny_dir):
    out = tmp_path / "ts_only"
    export(tiny_dir, out, cases=CASES[:1], progress=False)
    with pytest.raises(ArtifactError, match="--format exported"):
        load_artifact(out, "preprocessed", "exported")
    with pytest.raises(ValueError, match="unknown format 'tflite'"):
        load_artifact(out, "preprocessed", "tflite")
    with pytest.raises(ValueError, match="unknown export format"):
        export(tiny_dir, tmp_path / "x", formats=("tflite",), progress=False)
    assert not (tmp_path / "x").exists()


@needs_onnx
def test_failed_onnx_parity_writes_nothing(tmp_path, tiny_dir):
    """ONNX Runtime is not bit-exact: held to max|diff| == 0 its file fails and nothing is written,
    although the TorchScript archive passes the same bound."""
    out = tmp_path / "strict"
    with pytest.raises(ExportParityError) as err:
        export(tiny_dir, out, formats=("torchscript", "onnx"), cases=CASES[1:2], bounds=ParityBounds(0.99999, 0.0),
               progress=False)
    assert [r.label for r in err.value.reports] == ["preprocessed onnx vs eager"]
    assert not out.exists() and not list(tmp_path.iterdir())


def test_onnx_without_the_extra_fails_before_any_work(tmp_path, tiny_dir, monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else find_spec(name, *a))
    args = ["export", "--model-path", str(tiny_dir), "--output", str(tmp_path / "o"), "--format", "onnx"]
    assert main(args) == 2
    assert "pip install -e '.[onnx]'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cli_export_format_then_verify_and_embed(tmp_path, tiny_dir, speech_files, capsys, monkeypatch):
    # the CLI's suites, shortened to this module's (the full 32-clip suites run in test_cli.py)
    monkeypatch.setattr("w2vlab.export.DEFAULT_LENGTHS", (16160, 40037))
    monkeypatch.setattr("w2vlab.suite.build_suite", lambda audio=(): CASES)
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
