"""Labelled reduced-precision copies (the int8 ONNX files): run one clip at a time, counted, refused alone.

* Dynamic int8 takes one activation scale per tensor, so a padded batch couples its clips: measured
  here on the raw ONNX Runtime session, and removed by the loaders, which run the file clip by clip.
* The card and metadata say how many MatMuls run as integer kernels, read from the graph.
* A copy that misses its bounds is refused alone: the verified files are written, the refused one is
  named in the metadata, ``parity.json`` and the card, and the command exits non-zero.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from w2vlab._contract import FILES, onnx_available
from w2vlab.export._suite import build_suite, synthetic_speech
from w2vlab.runtime._artifact import load_artifact
from w2vlab.runtime._prepare import model_inputs

pytestmark = pytest.mark.skipif(not onnx_available(), reason="needs the [onnx] extra")
LENGTHS = (560, 48000, 16160, 8000)  # the 35 ms clip beside a 3 s one: the case that failed at full size


def _rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row, max|a - b| / max|b|."""
    return (a - b).abs().max(1).values / b.abs().max(1).values


@pytest.mark.parametrize("mode", ["preprocessed", "waveform"])
def test_int8_gives_a_clip_the_same_embedding_alone_and_in_a_batch(tiny_all_formats, mode):
    from w2vlab._features import FeatureConfig
    from w2vlab.runtime._entry import PreprocessedSpeakerEncoder, ProgramWaveformEntry
    from w2vlab.runtime._loaders import OnnxRuntimeCore, onnx_session

    out, _, _ = tiny_all_formats
    waves = [synthetic_speech(n, seed=i) for i, n in enumerate(LENGTHS)]
    art = load_artifact(out, mode, "onnx-int8")
    alone = torch.stack([art.embed(w, 16000) for w in waves])
    assert torch.equal(art.embed_batch(waves, 16000), alone)  # clip by clip: exactly its own embedding
    core = OnnxRuntimeCore(onnx_session(out / FILES["onnx-int8", mode]))
    raw = (
        PreprocessedSpeakerEncoder(core, 160) if mode == "preprocessed" else ProgramWaveformEntry(core, FeatureConfig())
    )
    with torch.inference_mode():  # the same file on the padded batch at once: its clips share activation scales
        coupled = raw(*model_inputs(mode, waves, art.feature_extractor if mode == "preprocessed" else None))
    assert _rel(coupled, alone).max() > 1e-3


def test_int8_matmuls_are_counted_from_the_graph(tiny_all_formats):
    from w2vlab.export._int8 import count_matmuls

    out, _, _ = tiny_all_formats
    md = json.loads((out / "metadata.json").read_text())
    for mode in ("preprocessed", "waveform"):
        counted = count_matmuls(out / FILES["onnx-int8", mode])
        assert md["artifacts"][mode]["formats"]["onnx-int8"]["matmuls"] == counted
        assert counted["integer"] > 0 and counted["float_activations"] > 0
        fp32 = count_matmuls(out / FILES["onnx", mode])
        assert fp32["integer"] == 0 and fp32["float_weights"] >= counted["integer"]
    card = (out / "README.md").read_text()
    assert f"waveform: {counted['integer']} integer-kernel MatMuls" in card and "one clip at a time" in card


def test_a_refused_int8_copy_keeps_the_verified_files(tiny_dir, tmp_path, monkeypatch, capsys):
    import w2vlab._parity as parity
    import w2vlab.export._pipeline as pipeline
    import w2vlab.export._suite as suite
    from w2vlab.cli import main

    real = parity.format_bounds

    def strict_int8(fmt, mode, bounds=parity.ParityBounds()):  # an int8 bound no int8 copy can meet
        return parity.ParityBounds(min_cosine=0.9999999) if fmt == "onnx-int8" else real(fmt, mode, bounds)

    monkeypatch.setattr(pipeline, "format_bounds", strict_int8)
    monkeypatch.setattr(suite, "named_suite", lambda name: build_suite(lengths=(16160,), batches=()))
    out = tmp_path / "art"
    code = main(["export", "--model-path", str(tiny_dir), "--format", "all", "--output", str(out), "--suite", "full"])
    err = capsys.readouterr().err
    assert code == 1 and "onnx-int8 REFUSED" in err and "not written" in err
    written = sorted(p.name for p in out.iterdir())
    assert FILES["onnx", "preprocessed"] in written and FILES["exported", "preprocessed"] in written
    assert not any("int8" in name for name in written)
    md = json.loads((out / "metadata.json").read_text())
    assert "onnx-int8" not in md["artifacts"]["preprocessed"]["formats"]
    assert md["refused"]["onnx-int8"]["preprocessed"]["failed_clips"] == ["synth_16160_odd"]
    assert "refused" in json.loads((out / "parity.json").read_text())
    assert "**Refused, not written:** the onnx-int8 copy" in (out / "README.md").read_text()
    load_artifact(out, "preprocessed", "onnx")  # what was kept loads and checks out
    shutil.rmtree(out)
