"""Waveform mode: the reloaded artifact against HF extractor + eager model; the naive trace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from w2vlab._audio import prepare_waveform, read_audio
from w2vlab._contract import FILES, METADATA_FILE, ArtifactError
from w2vlab._parity import compare
from w2vlab.export._naive import ignores_input, naive_trace_report
from w2vlab.export._pipeline import export
from w2vlab.export._suite import QUICK_LENGTHS, build_suite, synthetic_speech
from w2vlab.export._torchscript import save_script
from w2vlab.model._checkpoint import feature_extractor_for, load_speaker_encoder
from w2vlab.runtime._artifact import load_artifact
from w2vlab.runtime._loaders import load_script

WAV = FILES["torchscript", "waveform"]


@pytest.fixture(scope="module")
def both(tmp_path_factory, tiny_dir):
    out = tmp_path_factory.mktemp("export") / "both"
    export(tiny_dir, out, modes=("preprocessed", "waveform"), cases=build_suite(QUICK_LENGTHS), progress=False)
    return out


@pytest.fixture(scope="module")
def eager(tiny_dir):
    loaded = load_speaker_encoder(tiny_dir)
    return loaded.model, feature_extractor_for(loaded)


def _reference(model, fe, wave: np.ndarray) -> torch.Tensor:
    out = fe(wave, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    with torch.inference_mode():
        return model(out["input_features"], out["attention_mask"])


def test_reloaded_waveform_artifact_matches_hf_plus_eager(both, eager, speech_files):
    model, fe = eager
    scripted = torch.jit.load(str(both / WAV)).eval()
    waves = [prepare_waveform(*read_audio(p), 16000) for p in speech_files]
    waves += [synthetic_speech(n, seed=n) for n in (560, 561, 16160, 48037)]
    with torch.inference_mode():
        got = torch.cat([scripted(torch.from_numpy(w)[None]) for w in waves])
    want = torch.cat([_reference(model, fe, w) for w in waves])
    report = compare(want, got)
    assert report.worst_cosine >= 0.99999, report  # features differ ~1e-5 (float32 reduction order)
    assert report.worst_max_abs_diff <= 1e-5, report


def test_waveform_padded_batch_with_lengths_matches_clips_alone(both, eager):
    model, fe = eager
    scripted = torch.jit.load(str(both / WAV)).eval()
    waves = [synthetic_speech(n, seed=i) for i, n in enumerate((16160, 8000, 561, 40080))]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w)
    with torch.inference_mode():
        together = scripted(batch, lengths)
    alone = torch.cat([_reference(model, fe, w) for w in waves])
    assert compare(alone, together).passed


def test_too_short_audio_raises_inside_the_artifact(both):
    scripted = torch.jit.load(str(both / WAV)).eval()
    with pytest.raises(torch.jit.Error, match=r"559 samples, fewer than the minimum of 560"):
        scripted(torch.randn(1, 559) * 0.1)
    with pytest.raises(torch.jit.Error, match="fewer than the minimum"):
        scripted(torch.randn(2, 20000) * 0.1, torch.tensor([20000, 300]))


def test_consumer_waveform_mode_agrees_with_preprocessed_mode(both, speech_files):
    pre, wav = load_artifact(both, "preprocessed"), load_artifact(both, "waveform")
    assert wav.mode == "waveform" and pre.mode == "preprocessed"
    for path in speech_files[:4]:
        a, b = pre.embed_file(path), wav.embed_file(path)
        assert (a - b).abs().max() <= 1e-5 and pre.score(a, b) >= 0.99999
    with pytest.raises(ValueError, match="too short"):
        wav.embed(np.zeros(100, np.float32), 16000)


def test_metadata_lists_both_modes(both):
    md = load_artifact(both).metadata
    assert set(md["artifacts"]) == {"preprocessed", "waveform"}
    assert md["artifacts"]["waveform"]["inputs"][0]["name"] == "waveform"
    assert md["artifacts"]["waveform"]["formats"]["torchscript"]["parity"]["passed"]


def test_naive_trace_bakes_the_example_in(tiny_dir, eager):
    model, fe = eager
    naive, report = naive_trace_report(model, fe, lengths=(32000, 16160, 48000))
    assert any("constant" in w for w in naive.tracer_warnings)
    assert ignores_input(naive)  # different clips, bit-identical embeddings
    first, *others = report.clips
    assert first.max_abs_diff == 0.0  # only the tracing example itself is right
    assert all(c.max_abs_diff > 1e-3 for c in others)
    assert not report.passed


def test_hash_covers_the_frontend(both, tmp_path):
    """The frontend's buffers run too: an edited mel filterbank must be refused like edited weights."""
    import shutil

    edited = tmp_path / "edited"
    shutil.copytree(both, edited)
    module, extra = load_script(edited / WAV, (METADATA_FILE,))
    with torch.no_grad():
        module.frontend.mel_filters.mul_(1.01)  # (K, M) float64: 1% louder mels, same weights
    save_script(module, edited / WAV, extra)
    with pytest.raises(ArtifactError, match="content does not match"):
        load_artifact(edited, "waveform")
    assert load_artifact(both, "waveform").embedding_dim == 32  # the untouched copy still opens


def test_consumer_runs_the_frontend_on_one_thread_with_the_same_values(both):
    """Artifact.forward calls frontend then core (the frontend on FRONTEND_THREADS), giving exactly
    what the whole module gives, and leaves torch's thread count as it found it, also on an error."""
    from w2vlab.runtime._loaders import FRONTEND_THREADS

    art = load_artifact(both, "waveform")
    frontend, core = art._stages
    seen = []

    def recording_frontend(*inputs):
        seen.append(torch.get_num_threads())
        return frontend(*inputs)

    art._stages = (recording_frontend, core)
    waves = torch.from_numpy(np.stack([synthetic_speech(24000, seed=3), synthetic_speech(24000, seed=4)]))
    lengths = torch.tensor([24000, 9000])
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.inference_mode():
            got, want = art.forward(waves, lengths), art.module(waves, lengths)
        assert seen == [FRONTEND_THREADS] and torch.get_num_threads() == 2
        assert torch.equal(got, want)
        with pytest.raises(torch.jit.Error, match="fewer than the minimum"):
            art.forward(waves[:, :559])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
