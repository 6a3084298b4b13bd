"""The pooling choice (issue #26 section 1): "toolkit" pools an odd frame count's half row, "masked" does not.

The reference for toolkit pooling is WeSpeaker's own computation, restated on HF's encoder forward
(``tests/test_wespeaker.py``), each clip alone.  Covered: eager against it on odd and even frame
counts; batch invariance of both choices; an exported toolkit artifact (both modes, TorchScript,
``.pt2``, ONNX) against it, alone and in padded batches; the ``clip_rows`` contract and its errors;
the ``.pt2`` taking the extractor's int32 mask as it comes; the card's snippets; the defaults.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_card_snippet
from test_wespeaker import _wespeaker_embedding

from w2vlab._contract import InputError
from w2vlab._features import toolkit_inputs
from w2vlab.export._pipeline import export
from w2vlab.export._suite import build_suite, synthetic_speech
from w2vlab.model._checkpoint import feature_extractor_for, load_speaker_encoder
from w2vlab.runtime._artifact import load_artifact
from w2vlab.runtime._prepare import model_inputs

ODD, EVEN = (16160, 8160, 24160), (16000, 8000, 24000)  # 99, 49, 149 and 98, 48, 148 frames of 10 ms
FORMATS = ("torchscript", "exported", "onnx")


@pytest.fixture(scope="module")
def toolkit(tiny_dir):
    loaded = load_speaker_encoder(tiny_dir, pooling="toolkit")
    return loaded.model, feature_extractor_for(loaded)


@pytest.fixture(scope="module")
def masked(tiny_dir):
    return load_speaker_encoder(tiny_dir).model


def relative_max_diff(ref: torch.Tensor, cand: torch.Tensor) -> float:
    """max|ref - cand| / max|ref| over rows of [N, D] embeddings, the quantity the bounds hold."""
    assert ref.shape == cand.shape, (ref.shape, cand.shape)
    return float((ref - cand).abs().max() / ref.abs().max())


def _waves(lengths, seed: int = 7) -> list[np.ndarray]:
    return [synthetic_speech(n, seed + i) for i, n in enumerate(lengths)]


def _alone(model, fe, wave: np.ndarray) -> torch.Tensor:
    """WeSpeaker's batch-1 extraction restated: the extractor's output as it comes -> [1, D]."""
    out = fe([wave], sampling_rate=16000, padding="longest", return_tensors="pt")
    return _wespeaker_embedding(model, out["input_features"], out["attention_mask"])


@pytest.mark.parametrize("n", ODD + EVEN)
def test_eager_toolkit_pooling_is_wespekers_computation(toolkit, masked, n):
    model, fe = toolkit
    (wave,) = _waves([n])
    with torch.inference_mode():
        got = model(*model_inputs("preprocessed", [wave], fe, "toolkit"))
        dropped = masked(*model_inputs("preprocessed", [wave], fe, "masked"))
    want = _alone(model, fe, wave)
    assert relative_max_diff(want, got) <= 1e-5
    if n in ODD:  # the half row moves the embedding far past any bound; without one the choices agree
        assert relative_max_diff(want, dropped) > 1e-3
    else:
        assert relative_max_diff(want, dropped) <= 1e-5


@pytest.mark.parametrize("pooling", ["toolkit", "masked"])
def test_eager_batch_invariance_for_both_choices(tiny_dir, pooling):
    loaded = load_speaker_encoder(tiny_dir, pooling=pooling)
    model, fe = loaded.model, feature_extractor_for(loaded)
    waves = _waves(ODD + EVEN)
    with torch.inference_mode():
        batched = model(*model_inputs("preprocessed", waves, fe, pooling))
        alone = torch.cat([model(*model_inputs("preprocessed", [w], fe, pooling)) for w in waves])
    for i in range(len(waves)):
        assert relative_max_diff(alone[i : i + 1], batched[i : i + 1]) <= 1e-5, (pooling, i)


@pytest.fixture(scope="module")
def artifact(tiny_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toolkit") / "art"
    cases = build_suite(lengths=(560, 8160, 16000, 16160), batches=((16160, 8000, 24160), (561, 48000)))
    export(
        tiny_dir,
        out,
        modes=("preprocessed", "waveform"),
        formats=FORMATS,
        cases=cases,
        progress=False,
        pooling="toolkit",
    )
    return out


def test_metadata_parity_and_card_name_the_choice(artifact):
    md = json.loads((artifact / "metadata.json").read_text())
    assert md["pooling"] == "toolkit"
    inputs = {i["name"]: i for i in md["artifacts"]["preprocessed"]["inputs"]}
    assert inputs["attention_mask"]["dtype"] == "int32" and inputs["clip_rows"]["dtype"] == "int64"
    parity = json.loads((artifact / "parity.json").read_text())
    names = [clip["name"] for clip in parity["preprocessed"]["clips"]]
    assert "synth_16160_odd" in names and "synth_16000" in names and "batch_16160+8000+24160[2]" in names
    card = (artifact / "README.md").read_text()
    assert "- Pooling: toolkit: " in card and "clip_rows" in card


@pytest.mark.parametrize("mode", ["preprocessed", "waveform"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_artifact_equals_wespeaker_alone_and_in_a_batch(artifact, toolkit, fmt, mode):
    model, fe = toolkit
    waves = _waves(ODD + EVEN, seed=11)
    want = torch.cat([_alone(model, fe, w) for w in waves])  # [6, D]
    art = load_artifact(artifact, mode, fmt)
    bound = 3e-4 if (fmt, mode) == ("onnx", "waveform") else 3e-5  # ONNX Runtime's DFT: w2vlab._parity.format_bounds
    batched = art.embed_batch(waves, 16000)
    alone = torch.stack([art.embed(w, 16000) for w in waves])
    for i in range(len(waves)):
        assert relative_max_diff(want[i : i + 1], batched[i : i + 1]) <= bound, (i, "batch")
        assert relative_max_diff(want[i : i + 1], alone[i : i + 1]) <= bound, (i, "alone")


def test_program_takes_the_extractors_output_as_it_comes(artifact, toolkit):
    model, fe = toolkit
    waves = _waves((16160, 8000))
    features, mask, rows = toolkit_inputs(fe, waves)
    assert mask.dtype == torch.int32  # what the extractor returns
    program = torch.export.load(str(artifact / "w2vbert_speaker_exported_preprocessed.pt2")).module()
    with torch.inference_mode():
        got = program(features, mask, rows)
    want = torch.cat([_alone(model, fe, w) for w in waves])
    assert relative_max_diff(want, got) <= 3e-5


def test_clip_rows_contract_and_errors(artifact, toolkit):
    _, fe = toolkit
    module = load_artifact(artifact, "preprocessed").module
    features, mask, rows = toolkit_inputs(fe, _waves((16160, 8000)))  # 50 rows (half row) and 24
    assert rows.tolist() == [50, 24] and mask.sum(1).tolist() == [49, 24]
    with pytest.raises(Exception, match="half row and a padding row look the same"):
        module(features, mask)
    with pytest.raises(Exception, match=r"clip_rows\[1\] = 26 but the mask gives that clip 24 rows"):
        module(features, mask, torch.tensor([50, 26]))
    with pytest.raises(Exception, match=r"clip_rows must have shape \(2,\)"):
        module(features, mask, torch.tensor([50]))
    one, one_mask, _ = toolkit_inputs(fe, _waves((16160,)))
    with torch.inference_mode():  # one clip: all its rows are its own, clip_rows not needed
        assert torch.equal(module(one, one_mask), module(one, one_mask, torch.tensor([50])))


def test_card_torchscript_snippet_runs_without_w2vlab(artifact, toolkit, tmp_path):
    save = f"np.save({str(tmp_path / 'one.npy')!r}, embedding.numpy()); np.save({str(tmp_path / 'two.npy')!r}, "
    run_card_snippet(artifact, save + "embeddings.numpy())\n", tmp_path)
    model, fe = toolkit
    rng = np.random.default_rng(0)  # the snippet's clips
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (32000, 16160)]
    want = torch.cat([_alone(model, fe, w) for w in waves])
    assert relative_max_diff(want[:1], torch.from_numpy(np.load(tmp_path / "one.npy"))[None]) <= 3e-5
    assert relative_max_diff(want, torch.from_numpy(np.load(tmp_path / "two.npy"))) <= 3e-5


def test_card_program_snippets_run_as_written(artifact, toolkit):
    model, fe = toolkit
    card = (artifact / "README.md").read_text()
    body = card.split("## The `.pt2` and ONNX files")[1].split("\n## ")[0]
    blocks = [b.split("```", 1)[0] for b in body.split("```python\n")[1:]]
    assert len(blocks) == 4  # .pt2 and ONNX, both modes
    for code in blocks:
        scope: dict = {}
        exec(code.replace('"w2vbert_speaker/', f'"{artifact}/'), scope)
        wave = scope["wave"] if "fe" in scope else scope["wave"][0].numpy()
        got = torch.as_tensor(scope["embedding"])[None]
        bound = 3e-4 if "waveform.onnx" in code else 3e-5
        assert relative_max_diff(_alone(model, fe, wave), got) <= bound, code.splitlines()[-2]


def test_defaults_follow_the_checkpoints_toolkit(tiny_dir, tmp_path):
    from w2vlab.model._checkpoint import HEAD_WEIGHTS, read_safetensors

    assert load_speaker_encoder(tiny_dir).head.pooling == "masked"  # w2vlab's own head
    reference = tmp_path / "reference.pth"  # the reference recipe's layout: {"modules": {"spk_model": ...}}
    torch.save({"modules": {"spk_model": read_safetensors(tiny_dir / HEAD_WEIGHTS)}}, reference)
    assert load_speaker_encoder(tiny_dir, checkpoint=reference).head.pooling == "toolkit"
    assert load_speaker_encoder(tiny_dir, checkpoint=reference, pooling="masked").head.pooling == "masked"
    with pytest.raises(InputError, match=r"unknown pooling 'mean'; expected one of \('toolkit', 'masked'\)"):
        load_speaker_encoder(tiny_dir, pooling="mean")
