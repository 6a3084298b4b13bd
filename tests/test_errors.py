"""Errors that help: each format's corrupt file is named as that format, one error for too-short audio,
install hints that say what needs the package."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from w2vlab._contract import (
    FILES,
    FORMAT_TAG,
    FORMATS,
    METADATA_FILE,
    ArtifactError,
    AudioTooShortError,
    InputError,
    MissingDependencyError,
    W2vlabError,
    require,
)
from w2vlab.runtime._artifact import load_artifact

# What the message must call the file, per format; no other format's name may appear.
NAMES = {
    "torchscript": "TorchScript archive",
    "exported": "torch.export program",
    "onnx": "an ONNX model",
    "onnx-int8": "int8 ONNX model",
    "aoti": "AOTInductor package",
    "openvino": "OpenVINO IR",
}
NEEDS = {"onnx": ("onnx", "onnxruntime"), "onnx-int8": ("onnx", "onnxruntime"), "openvino": ("openvino",)}


def _artifact_with(tmp_path, fmt: str, content: bytes):
    """A directory whose metadata.json is valid and lists one ``fmt`` file holding ``content``."""
    name = FILES[(fmt, "preprocessed")]
    (tmp_path / name).write_bytes(content)
    if fmt == "openvino":  # the IR's weights beside it: the damaged file is the .xml
        (tmp_path / name).with_suffix(".bin").write_bytes(b"\0" * 64)
    entry = {"file": name, "parity": {}, "content_sha256": "0" * 64}
    metadata = {
        "format": FORMAT_TAG,
        "artifacts": {"preprocessed": {"inputs": [], "output": {}, "formats": {fmt: entry}}},
        "sample_rate": 16000,
        "feature_dim": 160,
        "embedding_dim": 8,
        "min_num_samples": 560,
        "export": {},
        "versions": {"torch": torch.__version__},
        "feature_extractor": {"config": {}},
        "model": {},
        "pooling": "masked",
    }
    (tmp_path / METADATA_FILE).write_text(json.dumps(metadata))
    return tmp_path


def _truncated_zip(tmp_path) -> bytes:
    """A real zip (torch.save's format, as .pt/.pt2 files are) cut in half: its central directory is gone."""
    torch.save({"w": torch.arange(1000.0)}, tmp_path / "whole.zip")
    data = (tmp_path / "whole.zip").read_bytes()
    (tmp_path / "whole.zip").unlink()
    return data[: len(data) // 2]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_file_is_named_by_its_format(tmp_path, fmt, damage):
    for package in NEEDS.get(fmt, ()):
        pytest.importorskip(package)
    content = np.random.default_rng(0).bytes(4096) if damage == "garbage" else _truncated_zip(tmp_path)
    directory = _artifact_with(tmp_path, fmt, content)
    with pytest.raises(ArtifactError) as err:
        load_artifact(directory, "preprocessed", fmt)
    message = str(err.value)
    assert NAMES[fmt] in message and FILES[(fmt, "preprocessed")] in message, message
    others = [name for other, name in NAMES.items() if other != fmt and name not in NAMES[fmt]]
    assert not any(name in message for name in others), message
    assert "copy or export it again" in message


def test_require_names_what_needs_the_package_and_how_to_install_it():
    require("json", needed_by="anything", hint="nothing to do")  # installed: no error
    missing = "w2vlab_no_such_package_x"
    assert importlib.util.find_spec(missing) is None
    with pytest.raises(MissingDependencyError) as err:
        require("json", missing, needed_by="--format tea", hint="pip install 'w2vlab[tea]'")
    assert str(err.value) == f"--format tea needs {missing}, which is not installed; run: pip install 'w2vlab[tea]'"
    assert isinstance(err.value, ImportError) and isinstance(err.value, W2vlabError)


def test_input_errors_are_still_value_errors():
    """Callers that catch ValueError keep working: the project's input errors derive from it."""
    for cls in (InputError, AudioTooShortError, ArtifactError):
        assert issubclass(cls, ValueError) and issubclass(cls, W2vlabError)


def test_too_short_audio_is_one_error_with_one_message(tmp_path):
    """The features path, the corpus's clip step and the artifact's preparation share prepare_clip:
    the same AudioTooShortError, saying what was received (samples, seconds), the minimum and what to do."""
    import soundfile as sf
    from transformers import SeamlessM4TFeatureExtractor

    from w2vlab._audio import prepare_clip
    from w2vlab._features import compute_input_features_from_wave
    from w2vlab.corpus._embed import BatchPreparer, CorpusItem
    from w2vlab.model._config import W2VBERT_PREPROCESSOR
    from w2vlab.runtime._prepare import Preparer

    wave = np.full(279, 0.1, np.float32)  # at 8 kHz: 558 samples at 16 kHz, two short of 560
    want = (
        "audio too short: received 279 samples at 8000 Hz (0.035 s), 558 samples at 16000 Hz after resampling; "
        "the feature extractor needs at least 560 samples at 16000 Hz (0.035 s, two analysis frames); "
        "pad the clip (e.g. with silence) to at least that length or leave it out"
    )
    fe = SeamlessM4TFeatureExtractor.from_dict(W2VBERT_PREPROCESSOR)
    sf.write(tmp_path / "short.wav", wave, 8000, subtype="FLOAT")
    corpus = BatchPreparer(Preparer("waveform"), 16000, 560)
    for attempt in (
        lambda: prepare_clip(wave, 8000, 560),
        lambda: compute_input_features_from_wave(fe, wave, 8000),
        lambda: corpus.clip(CorpusItem("k", tmp_path / "short.wav")),
    ):
        with pytest.raises(AudioTooShortError) as err:
            attempt()
        assert str(err.value) == want
    with pytest.raises(AudioTooShortError, match=r"^audio too short: received 559 samples at 16000 Hz \(0\.035 s\); "):
        prepare_clip(np.zeros((559, 2), np.float32), 16000, 560)  # channels do not count as samples
    assert len(prepare_clip(np.zeros(560, np.float32), 16000, 560)) == 560


def test_preparers_stay_picklable():
    """The corpus's BatchPreparer runs in DataLoader workers and Ray actors: it and its Preparer pickle."""
    import pickle

    from w2vlab.corpus._embed import BatchPreparer
    from w2vlab.model._config import W2VBERT_PREPROCESSOR
    from w2vlab.runtime._prepare import Preparer

    for prepare in (Preparer("waveform"), Preparer("preprocessed", dict(W2VBERT_PREPROCESSOR))):
        preparer = BatchPreparer(prepare, 16000, 560)
        again = pickle.loads(pickle.dumps(preparer))
        assert again == preparer
        waves = [np.full(16160, 0.1, np.float32), np.full(8000, 0.1, np.float32)]
        for a, b in zip(again.prepare(waves), preparer.prepare(waves)):
            assert torch.equal(a, b)
