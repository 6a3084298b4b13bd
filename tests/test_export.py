"""Preprocessed export: the reloaded archive against the eager model, atomic writes, consumer API.

Every parity check here recomputes the reference itself (HF extractor + eager model loaded
from the checkpoint) and loads the saved ``.pt`` with plain ``torch.jit.load``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_card_snippet
from transformers import SeamlessM4TFeatureExtractor

from w2vlab._contract import FILES
from w2vlab._parity import ParityBounds, compare
from w2vlab.export import _pipeline as export_mod
from w2vlab.export._pipeline import ExportParityError, export
from w2vlab.export._suite import DEFAULT_LENGTHS, QUICK_LENGTHS, build_suite, synthetic_speech
from w2vlab.model._checkpoint import load_speaker_encoder
from w2vlab.runtime._artifact import ArtifactError, load_artifact

PRE = FILES["torchscript", "preprocessed"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_dir):
    out = tmp_path_factory.mktemp("export") / "art"
    export(tiny_dir, out, progress=False)
    return out


@pytest.fixture(scope="module")
def eager(tiny_dir):
    loaded = load_speaker_encoder(tiny_dir)
    return loaded.model, SeamlessM4TFeatureExtractor(**loaded.preprocessor_config)


def _jit_load(path: Path) -> torch.jit.ScriptModule:
    return torch.jit.load(str(path)).eval()


def test_layout(exported):
    assert sorted(p.name for p in exported.iterdir()) == sorted(
        ["README.md", "feature_extractor", "metadata.json", "parity.json", PRE]
    )
    assert (exported / "feature_extractor" / "preprocessor_config.json").is_file()
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # no temp siblings left


def test_reloaded_batch1_is_bit_identical_on_many_lengths(exported, eager):
    model, fe = eager
    scripted = _jit_load(exported / PRE)
    half_padded = 0  # clips whose odd frame count leaves HF's last stacked row half padding
    with torch.inference_mode():
        for n in DEFAULT_LENGTHS:
            out = fe(synthetic_speech(n, seed=n), sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
            half_padded += int(out["attention_mask"][0, -1] == 0)
            feats = out["input_features"][0][out["attention_mask"][0].bool()]  # [T, 160], the seed's call
            diff = (scripted(feats.unsqueeze(0)) - model(feats.unsqueeze(0))).abs().max().item()
            assert diff == 0.0, f"{n} samples: max|diff| {diff}"  # same graph, same kernels: exact
    assert half_padded >= 5, "the lengths must include odd frame counts, as HF's masks say"


def test_reloaded_padded_batch_matches_clips_alone(exported, eager):
    model, fe = eager
    scripted = _jit_load(exported / PRE)
    waves = [synthetic_speech(n, seed=i) for i, n in enumerate((16160, 561, 40080, 8000, 96321))]
    batch = fe(waves, sampling_rate=16000, padding=True, return_tensors="pt", return_attention_mask=True)
    with torch.inference_mode():
        together = scripted(batch["input_features"], batch["attention_mask"])
        alone = torch.cat(
            [
                model(
                    *[
                        fe(w, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)[k]
                        for k in ("input_features", "attention_mask")
                    ]
                )
                for w in waves
            ]
        )
    report = compare(alone, together, bounds=ParityBounds(min_cosine=0.99999, max_abs_diff=1e-5))
    assert report.passed, report


def test_pruned_demo_exports_and_matches_eager(tmp_path, pruned_dir):
    result = export(pruned_dir, tmp_path / "pruned", cases=build_suite(QUICK_LENGTHS), progress=False)
    model = load_speaker_encoder(pruned_dir).model
    scripted = _jit_load(result.output / PRE)
    x = torch.randn(1, 77, 160)
    mask = torch.ones(3, 77, dtype=torch.long)
    mask[1, 40:] = 0
    with torch.inference_mode():
        assert torch.equal(scripted(x), model(x))
        xb = torch.randn(3, 77, 160)
        assert (scripted(xb, mask) - model(xb, mask)).abs().max() <= 1e-5
    assert result.metadata["model"]["encoder_config"]["use_attention"] == [True, False, True, True]


def test_metadata_is_complete_and_has_no_paths(exported, tiny_dir):
    text = (exported / "metadata.json").read_text()
    md = json.loads(text)
    assert md["format"] == "w2vlab-artifact/3"
    assert md["export"]["path"] == "trace" and "Wav2Vec2BertConfig" in md["export"]["script_error"]
    assert md["feature_dim"] == 160 and md["sample_rate"] == 16000 and md["min_num_samples"] == 560
    assert set(md["versions"]) >= {"torch", "transformers", "numpy"}
    assert md["artifacts"]["preprocessed"]["formats"]["torchscript"]["parity"]["passed"] is True
    assert set(md["source_weights_sha256"]) == {"model.safetensors", "speaker_head.safetensors"}
    for needle in (str(exported), str(tiny_dir), str(Path.home()), os.environ.get("USER") or "root-user-absent"):
        assert needle not in text
    extra = {"metadata.json": ""}
    torch.jit.load(str(exported / PRE), _extra_files=extra)
    assert json.loads(extra["metadata.json"]) == md


BOUNDED = "cosine >= 0.99999, relative max|diff| (max|ref - cand| / max|ref|) <= 3.0e-05 per clip"


def test_parity_json_metadata_and_card_say_what_is_bounded(exported):
    """The relative max|diff| is what is bounded, and each clip's max|ref| is recorded beside the absolute
    max|diff|; the preprocessed archive stays exact (0 absolute, so 0 relative)."""
    summary = json.loads((exported / "metadata.json").read_text())["artifacts"]["preprocessed"]["formats"]
    summary = summary["torchscript"]["parity"]
    assert summary["bounded"] == BOUNDED and summary["bounds"]["max_abs_diff"] is None
    assert summary["worst_max_abs_diff"] == 0.0 == summary["worst_max_rel_diff"]
    report = json.loads((exported / "parity.json").read_text())["preprocessed"]
    assert report["bounded"] == BOUNDED and len(report["clips"]) > 20
    for clip in report["clips"]:
        assert clip["max_abs_ref"] > 0.1 and clip["max_abs_diff"] == 0.0 == clip["max_rel_diff"]
    card = (exported / "README.md").read_text()
    assert BOUNDED.replace("|", "\\|") in card and "max|ref - cand| / max|ref|" in card


def test_metadata_written_before_relative_bounds_still_reads(exported):
    """An artifact exported before the bounds were relative (absolute bound, no relative values) still
    validates and gets a card that states its absolute bound."""
    from w2vlab._contract import validate_metadata
    from w2vlab.export._card import render_model_card

    md = json.loads((exported / "metadata.json").read_text())
    parity = md["artifacts"]["preprocessed"]["formats"]["torchscript"]["parity"]
    for key in ("bounded", "worst_max_rel_diff"):
        del parity[key]
    parity["bounds"] = {
        "min_cosine": 0.99999,
        "max_abs_diff": 1e-5,
        "short_clip_samples": 0,
        "short_clip_min_cosine": 1.0,
    }
    row = [line for line in render_model_card(validate_metadata(md)).splitlines() if line.startswith("| preprocessed")]
    assert len(row) == 1 and "| 0 | - | cosine >= 0.99999, absolute max\\|diff\\| <= 1.0e-05 per clip |" in row[0]


def test_existing_artifact_is_not_overwritten(exported, tiny_dir):
    before = {p: p.read_bytes() for p in exported.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match="--force"):
        export(tiny_dir, exported, progress=False)
    assert before == {p: p.read_bytes() for p in exported.rglob("*") if p.is_file()}


def test_failed_parity_writes_nothing_and_keeps_previous(tmp_path, tiny_dir, monkeypatch):
    out = tmp_path / "art"
    export(tiny_dir, out, cases=build_suite(QUICK_LENGTHS[:2], batches=()), progress=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    real_candidate_fn = export_mod.candidate_fn

    def off_by_a_bit(mode, artifact, fe, pooling):  # a broken export: every embedding 1e-3 off
        embed = real_candidate_fn(mode, artifact, fe, pooling)
        return lambda case: embed(case) + 1e-3

    monkeypatch.setattr(export_mod, "candidate_fn", off_by_a_bit)
    with pytest.raises(ExportParityError, match="failed parity") as err:
        export(tiny_dir, out, force=True, cases=build_suite(QUICK_LENGTHS[:2], batches=()), progress=False)
    assert not err.value.report.passed
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_failing_write_keeps_previous(tmp_path, tiny_dir, monkeypatch):
    out = tmp_path / "art"
    cases = build_suite(QUICK_LENGTHS[:1], batches=())
    export(tiny_dir, out, cases=cases, progress=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def disk_full(metadata):  # the last file of the export fails to be written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_mod, "render_model_card", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export(tiny_dir, out, force=True, cases=cases, progress=False)
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_output_path_that_is_a_file(tmp_path, tiny_dir):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        export(tiny_dir, tmp_path / "file", progress=False)


@pytest.mark.parametrize(
    "inputs, message",
    [
        ((torch.randn(1, 20, 80),), r"input_features must be \[batch, frames, 160\]; got shape \[1, 20, 80\]"),
        ((torch.randn(20, 160),), r"got shape \[20, 160\].*unsqueeze\(0\)"),
        (
            (torch.randn(2, 20, 160), torch.ones(2, 19, dtype=torch.long)),
            r"attention_mask must be \[batch, frames\] = \[2, 20\]; got shape \[2, 19\]",
        ),
        ((torch.randn(1, 0, 160),), "0 frames"),
    ],
)
def test_artifact_rejects_bad_features(exported, inputs, message):
    scripted = _jit_load(exported / PRE)
    with pytest.raises(torch.jit.Error, match=message):
        scripted(*inputs)


def test_consumer_api_matches_eager(exported, eager):
    model, fe = eager
    art = load_artifact(exported)
    wave = synthetic_speech(16160, seed=3)
    out = fe(wave, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    with torch.inference_mode():
        reference = model(out["input_features"], out["attention_mask"])[0]
    assert (art.embed(wave, 16000) - reference).abs().max() <= 1e-6
    batch = art.embed_batch([wave, synthetic_speech(8000, seed=4)], 16000)
    assert batch.shape == (2, 32) and (batch[0] - reference).abs().max() <= 1e-5
    assert art.score(batch[0], batch[0]) == pytest.approx(1.0)
    stereo_int16 = (np.stack([wave, wave], axis=1) * 32767).astype(np.int16)
    assert art.score(art.embed(stereo_int16, 16000), reference) > 0.9999


@pytest.mark.parametrize(
    "wave, message",
    [
        (np.zeros(300, np.float32), "too short"),
        (np.zeros(0, np.float32), "empty"),
        (np.full(16000, np.nan, np.float32), "NaN"),
    ],
)
def test_consumer_rejects_bad_audio(exported, wave, message):
    with pytest.raises(ValueError, match=message):
        load_artifact(exported).embed(wave, 16000)


def test_tampered_metadata_is_refused(tmp_path, exported):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    md = json.loads((copy / "metadata.json").read_text())
    md["embedding_dim"] = 999
    (copy / "metadata.json").write_text(json.dumps(md))
    with pytest.raises(ArtifactError, match="embeds metadata that differs"):
        load_artifact(copy)
    md["format"] = "something-else/9"
    (copy / "metadata.json").write_text(json.dumps(md))
    with pytest.raises(ArtifactError, match="format 'something-else/9'"):
        load_artifact(copy)


def test_model_card_snippet_runs_with_only_torch_and_transformers(tmp_path, exported, eager):
    """The artifact README's snippet, in a subprocess where importing w2vlab fails."""
    run_card_snippet(exported, f"np.save({str(tmp_path / 'e.npy')!r}, embedding.numpy())\n", tmp_path)
    model, fe = eager
    wave = np.random.default_rng(0).standard_normal(2 * 16000).astype(np.float32) * 0.1
    out = fe(wave, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    with torch.inference_mode():
        reference = model(out["input_features"], out["attention_mask"])[0].numpy()
    assert np.abs(np.load(tmp_path / "e.npy") - reference).max() <= 1e-6
