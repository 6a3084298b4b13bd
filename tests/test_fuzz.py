"""Property tests: random lengths, amplitudes, dtypes, layouts and batch compositions.

Every example either gives a correct result (the frontend matches the HF extractor within the
waveform bound; the consumer returns a finite embedding) or the documented ValueError for
audio that is too short.  Never a crash of another kind, never a NaN.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import SeamlessM4TFeatureExtractor

from w2vlab._features import FeatureConfig, TorchFeatureExtractor
from w2vlab.export._pipeline import export
from w2vlab.export._suite import QUICK_LENGTHS, build_suite
from w2vlab.model._config import W2VBERT_PREPROCESSOR
from w2vlab.runtime._artifact import load_artifact

FE = SeamlessM4TFeatureExtractor(**W2VBERT_PREPROCESSOR)
FRONTEND = TorchFeatureExtractor(FeatureConfig.from_extractor(FE)).eval()
MIN = FeatureConfig.from_extractor(FE).min_num_samples
# derandomize: CI sees the same examples every run (a failure reproduces); no example database on disk
FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# The per-bin normalisation divides by the std over the clip's frames.  HF sums those frames
# in float32, row by row; the frontend sums in float64.  From ~50 frames (0.5 s) on, the two
# agree within 3e-5 (measured over 160 random clips per length); with 3-25 frames a bin's std
# is estimated from a handful of values, one float32 rounding step of the mean is divided by
# it, and up to 5e-4 was measured.  That is a documented limit of short clips, like the pure
# tone in test_features.py, not noise hidden under a loose bound: long clips keep 1e-4.
SHORT_CLIP_SAMPLES = 8000


def _signal(n: int, amplitude: float, seed: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "noise":
        x = rng.standard_normal(n)
    else:  # a gliding harmonic with noise: speech-like, never constant over time
        t = np.arange(n) / 16000
        x = np.sin(2 * np.pi * (120 + 80 * t) * t * (1 + np.arange(n) % 3)) + 0.1 * rng.standard_normal(n)
    return (amplitude * x / np.abs(x).max()).astype(np.float32)


signals = st.builds(
    _signal,
    n=st.one_of(st.integers(MIN, SHORT_CLIP_SAMPLES), st.integers(SHORT_CLIP_SAMPLES, 40000)),
    amplitude=st.floats(1e-3, 1.0),
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(["noise", "speech-like"]),
)


@FUZZ
@given(wave=signals)
def test_frontend_matches_hf_on_random_clips(wave):
    ref = FE(wave, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    with torch.inference_mode():
        feats, mask = FRONTEND(torch.from_numpy(wave)[None])
    assert torch.equal(mask, ref["attention_mask"].long())
    bound = 1e-4 if len(wave) >= SHORT_CLIP_SAMPLES else 1e-3
    assert (feats - ref["input_features"]).abs().max() <= bound


@FUZZ
@given(waves=st.lists(signals, min_size=1, max_size=4))
def test_frontend_batch_equals_one_by_one(waves):
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w)
    with torch.inference_mode():
        feats, mask = FRONTEND(batch, lengths)
        for i, w in enumerate(waves):
            one, one_mask = FRONTEND(torch.from_numpy(w)[None])
            rows = one.shape[1]
            assert torch.equal(mask[i, :rows], one_mask[0]) and not mask[i, rows:].any()
            assert (feats[i, :rows][one_mask[0].bool()] - one[0][one_mask[0].bool()]).abs().max() <= 1e-5


@FUZZ
@given(n=st.integers(0, MIN + 40))
def test_frontend_short_clips_raise_or_are_finite(n):
    wave = torch.from_numpy(_signal(max(n, 1), 0.5, n, "noise")[:n])[None]
    if n < MIN:
        with pytest.raises(ValueError, match=f"{n} samples"):
            FRONTEND(wave)
    else:
        feats, _ = FRONTEND(wave)
        assert torch.isfinite(feats).all()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, tiny_dir):
    out = tmp_path_factory.mktemp("fuzz") / "art"
    export(
        tiny_dir,
        out,
        modes=("preprocessed", "waveform"),
        cases=build_suite(QUICK_LENGTHS[:2], batches=()),
        progress=False,
    )
    return {mode: load_artifact(out, mode) for mode in ("preprocessed", "waveform")}


@FUZZ
@given(
    n=st.integers(0, 30000),
    sr=st.sampled_from([8000, 16000, 22050, 44100, 48000]),
    dtype=st.sampled_from(["float32", "float64", "int16", "int32"]),
    channels=st.sampled_from([0, 1, 2]),  # 0: [N]; otherwise [N, C]
    amplitude=st.floats(1e-3, 1.0),
    mode=st.sampled_from(["preprocessed", "waveform"]),
)
def test_consumer_gives_finite_embedding_or_clear_error(artifact, n, sr, dtype, channels, amplitude, mode):
    art = artifact[mode]
    x = _signal(max(n, 1), amplitude, n, "speech-like")[:n]
    if dtype.startswith("int"):
        x = (x * np.iinfo(dtype).max).astype(dtype)
    else:
        x = x.astype(dtype)
    if channels:
        x = np.stack([x] * channels, axis=1)
    try:
        embedding = art.embed(x, sr)
    except ValueError as e:
        message = str(e)
        assert "empty" in message or "too short" in message or "samples" in message, message
        assert n * 16000 / sr < MIN + 2 or n < 9, (n, sr, message)  # only short audio may be refused
        return
    assert embedding.shape == (art.embedding_dim,) and torch.isfinite(embedding).all()
