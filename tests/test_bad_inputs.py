"""The bad-input matrix: every case fails early, with a message naming what was received.

Each row is (case id, action, expected exception, message fragment).  Actions run against a
tiny exported artifact and its checkpoint; after every row the artifact's files must be byte
for byte unchanged and no stray (hidden, half-built) files may appear next to it.
"""

from __future__ import annotations

import json
import shutil
import wave as wavelib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from w2vlab._audio import prepare_waveform, read_audio
from w2vlab._contract import FILES
from w2vlab.export._pipeline import export
from w2vlab.export._suite import QUICK_LENGTHS, build_suite, synthetic_speech
from w2vlab.export._torchscript import save_script
from w2vlab.model._checkpoint import CheckpointMismatchError, load_speaker_encoder
from w2vlab.runtime._artifact import ArtifactError, load_artifact
from w2vlab.runtime._loaders import load_script

PRE = FILES["torchscript", "preprocessed"]
SPEECH = synthetic_speech(16160, seed=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_dir):
    root = tmp_path_factory.mktemp("bad")
    art = root / "art"
    export(
        tiny_dir,
        art,
        modes=("preprocessed", "waveform"),
        cases=build_suite(QUICK_LENGTHS[:2], batches=()),
        progress=False,
    )
    return {
        "root": root,
        "art": art,
        "ckpt": tiny_dir,
        "pre": load_artifact(art),
        "wav": load_artifact(art, "waveform"),
    }


def _copy(world, name: str) -> Path:
    dst = world["root"] / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(world["art"], dst)
    return dst


def _write_wav(path: Path, frames: bytes, nframes_header: int | None = None) -> Path:
    with wavelib.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(frames)
    return path


def truncated_wav(world) -> Path:
    path = _write_wav(world["root"] / "full.wav", (np.clip(SPEECH, -1, 1) * 32767).astype("<i2").tobytes())
    data = path.read_bytes()
    (world["root"] / "truncated.wav").write_bytes(data[: len(data) // 2])
    return world["root"] / "truncated.wav"


def text_as_wav(world) -> Path:
    (world["root"] / "notes.wav").write_text("these are meeting notes, not audio\n")
    return world["root"] / "notes.wav"


def missing_pt(world) -> Path:
    d = _copy(world, "missing_pt")
    (d / PRE).unlink()
    return d


def metadata_mismatch(world) -> Path:
    d = _copy(world, "mixed_up")
    md = json.loads((d / "metadata.json").read_text())
    md["sample_rate"] = 8000
    (d / "metadata.json").write_text(json.dumps(md))
    return d


def tampered_weights(world) -> Path:
    d = _copy(world, "tampered")
    module, extra = load_script(d / PRE, ("metadata.json",))
    with torch.no_grad():
        next(module.core.parameters()).add_(1e-3)
    save_script(module, d / PRE, extra)
    return d


def not_torchscript(world) -> Path:
    d = _copy(world, "not_ts")
    torch.save({"weights": torch.zeros(3)}, d / PRE)
    return d


def wrong_prefix_checkpoint(world) -> Path:
    head = load_file(str(world["ckpt"] / "speaker_head.safetensors"))
    save_file({"model." + k: v for k, v in head.items()}, str(world["root"] / "prefixed.safetensors"))
    return world["root"] / "prefixed.safetensors"


def pickled_checkpoint(world) -> Path:
    import argparse

    torch.save({"modules": {"spk_model": {}}, "args": argparse.Namespace(lr=0.1)}, world["root"] / "full.pth")
    return world["root"] / "full.pth"


CASES = [
    ("empty audio", lambda w: w["pre"].embed(np.zeros(0, np.float32), 16000), ValueError, "empty: received shape (0,)"),
    ("shorter than minimum", lambda w: w["pre"].embed(np.zeros(559, np.float32), 16000), ValueError, "559 samples"),
    (
        "too short after resampling",
        lambda w: w["pre"].embed(np.full(250, 0.1, np.float32), 8000),
        ValueError,
        "500 samples at 16000 Hz after resampling",
    ),
    ("too short, waveform mode", lambda w: w["wav"].embed(SPEECH[:500], 16000), ValueError, "500 samples"),
    (
        "NaN samples",
        lambda w: w["pre"].embed(np.where(np.arange(16160) % 7 == 0, np.nan, SPEECH), 16000),
        ValueError,
        "2309 NaN/Inf values out of 16160",
    ),  # every 7th of 16160 samples
    (
        "Inf samples",
        lambda w: w["wav"].embed(np.r_[SPEECH, np.inf].astype(np.float32), 16000),
        ValueError,
        "1 NaN/Inf values out of 16161",
    ),
    (
        "rank-3 waveform",
        lambda w: w["pre"].embed(np.zeros((2, 2, 16000), np.float32), 16000),
        ValueError,
        "received shape (2, 2, 16000)",
    ),
    ("bool samples", lambda w: w["pre"].embed(np.zeros(16000, bool), 16000), TypeError, "dtype bool"),
    ("complex samples", lambda w: w["pre"].embed(np.zeros(16000, np.complex64), 16000), TypeError, "dtype complex64"),
    ("unsupported integer PCM", lambda w: w["pre"].embed(np.zeros(16000, np.int64), 16000), TypeError, "dtype int64"),
    ("a list, not an array", lambda w: w["pre"].embed([0.0] * 16000, 16000), TypeError, "got list"),
    ("zero sample rate", lambda w: w["pre"].embed(SPEECH, 0), ValueError, "positive number of Hz, got 0"),
    ("float sample rate", lambda w: w["pre"].embed(SPEECH, 16000.5), TypeError, "16000.5"),
    ("ambiguous 2-D shape", lambda w: w["pre"].embed(np.zeros((4, 4), np.float32), 16000), ValueError, "(4, 4)"),
    (
        "truncated WAV",
        lambda w: read_audio(truncated_wav(w)),
        ValueError,
        "truncated.wav is truncated",
    ),  # the file name alone holds "truncated"
    ("text file named .wav", lambda w: read_audio(text_as_wav(w)), ValueError, "notes.wav"),
    ("missing audio file", lambda w: w["pre"].embed_file(w["root"] / "nope.wav"), FileNotFoundError, "nope.wav"),
    ("missing artifact directory", lambda w: load_artifact(w["root"] / "nowhere"), FileNotFoundError, "nowhere"),
    ("missing artifact file", lambda w: load_artifact(missing_pt(w)), ArtifactError, f"{PRE} is missing"),
    ("metadata mix-up", lambda w: load_artifact(metadata_mismatch(w)), ArtifactError, "embeds metadata that differs"),
    ("tampered weights", lambda w: load_artifact(tampered_weights(w)), ArtifactError, "content does not match"),
    (
        ".pt that is not TorchScript",
        lambda w: load_artifact(not_torchscript(w)),
        ArtifactError,
        "not a TorchScript archive",
    ),
    ("unknown artifact mode", lambda w: load_artifact(w["art"], "onnx-ish"), ValueError, "onnx-ish"),
    ("features with wrong last dim", lambda w: w["pre"]._run(torch.zeros(1, 20, 80)), ValueError, "[1, 20, 80]"),
    ("features of rank 2", lambda w: w["pre"]._run(torch.zeros(20, 160)), ValueError, "[20, 160]"),
    (
        "mask of the wrong shape",
        lambda w: w["pre"]._run(torch.zeros(2, 20, 160), torch.ones(2, 21, dtype=torch.long)),
        ValueError,
        "[2, 21]",
    ),
    (
        "checkpoint needing full unpickling",
        lambda w: load_speaker_encoder(w["ckpt"], pickled_checkpoint(w)),
        ValueError,
        "never unpickles",
    ),
    (
        "wrong key prefix",
        lambda w: load_speaker_encoder(w["ckpt"], wrong_prefix_checkpoint(w)),
        CheckpointMismatchError,
        "adapter_layers",
    ),
    ("missing model path", lambda w: load_speaker_encoder(w["root"] / "no_model"), FileNotFoundError, "no_model"),
    (
        "pruned override inconsistent with weights",
        lambda w: load_speaker_encoder(w["ckpt"], config={"num_attention_heads_group": [1, 1]}),
        ValueError,
        "num_attention_heads_group[0] is 1",
    ),
    (
        "output path is a file",
        lambda w: export(w["ckpt"], w["root"] / "full.wav", progress=False),
        NotADirectoryError,
        "is a file",
    ),
    (
        "existing output without --force",
        lambda w: export(w["ckpt"], w["art"], progress=False),
        FileExistsError,
        "--force",
    ),
]


@pytest.mark.parametrize("action, error, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(world, action, error, message):
    before = {p: p.read_bytes() for p in world["art"].rglob("*") if p.is_file()}
    with pytest.raises(error) as caught:
        action(world)
    assert message in str(caught.value), str(caught.value)
    assert before == {p: p.read_bytes() for p in world["art"].rglob("*") if p.is_file()}  # nothing written
    assert not [p for p in world["root"].iterdir() if p.name.startswith(".")]  # no half-built output


def test_unwritable_output_directory(world, monkeypatch):
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    with pytest.raises(PermissionError, match="cannot write into"):
        export(world["ckpt"], world["root"] / "readonly" / "art", progress=False)


@pytest.mark.parametrize("layout", ["channels-last", "channels-first", "int16", "float64"])
def test_legitimate_variants_embed_like_float_mono(world, layout):
    """Not errors: the same audio in another layout or dtype gives the same embedding."""
    mono = world["pre"].embed(SPEECH, 16000)
    stereo = np.stack([SPEECH, SPEECH], axis=1)
    variant = {
        "channels-last": stereo,
        "channels-first": stereo.T,
        "int16": (SPEECH * 32767).astype(np.int16),
        "float64": SPEECH.astype(np.float64),
    }[layout]
    got = world["pre"].embed(variant, 16000)
    assert torch.isfinite(got).all() and world["pre"].score(got, mono) > 0.9999
    assert len(prepare_waveform(variant, 16000)) == len(SPEECH)
