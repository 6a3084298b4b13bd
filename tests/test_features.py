"""w2vlab._features against the independent reference, HF ``SeamlessM4TFeatureExtractor``.

Every numeric check compares with HF's own output (or with HF's internals, for the log-mel
before normalisation); the only self-comparisons are scripted/reloaded/exported vs eager,
batched vs one-by-one and chunked vs whole, which are properties of the port itself.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import SeamlessM4TFeatureExtractor

from w2vlab._audio import prepare_waveform, read_audio
from w2vlab._features import (
    FeatureConfig,
    TorchFeatureExtractor,
    compute_input_features_from_wave,
    log_mel_spectrogram,
)

DATA = Path(__file__).parent / "data"
SR = 16000
FEATURE_ATOL = 1e-4  # HF normalises in float32 with row-by-row sums; we sum in float64
BATCH_ATOL = 1e-5  # a clip in a padded batch vs the same clip alone, both ours
LOGMEL_ATOL = 1e-5  # log-mel before normalisation (bit-exact on the dev machine; BLAS may differ)


# --------------------------------------------------------------------------- fixtures and signals


@pytest.fixture(scope="module")
def fe() -> SeamlessM4TFeatureExtractor:
    # w2v-bert-2.0's preprocessor_config.json values, no hub access
    return SeamlessM4TFeatureExtractor(
        feature_size=80, num_mel_bins=80, padding_value=1.0, stride=2, sampling_rate=SR, return_attention_mask=True
    )


@pytest.fixture(scope="module")
def frontend(fe) -> TorchFeatureExtractor:
    return TorchFeatureExtractor(FeatureConfig.from_extractor(fe)).eval()


def _round_trip(module: torch.nn.Module) -> torch.jit.ScriptModule:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)


@pytest.fixture(scope="module")
def scripted(frontend) -> torch.jit.ScriptModule:
    return torch.jit.script(frontend)


@pytest.fixture(scope="module")
def reloaded(frontend) -> torch.jit.ScriptModule:
    return _round_trip(frontend)


def noise(n: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def speech_like(n: int, seed: int = 0, sr: int = SR) -> np.ndarray:
    """Three chirps under a 4 Hz syllable envelope, plus a little noise: float32 [n] in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    wave = np.zeros(n)
    for _ in range(3):
        f0, f1 = rng.uniform(150, 3500, size=2)
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * max(t[-1], 1e-3)))
        wave += rng.uniform(0.05, 0.25) * np.sin(phase + rng.uniform(0, 2 * np.pi))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi))
    return (envelope * wave + 0.005 * rng.standard_normal(n)).astype(np.float32)


def hf(fe, clips: np.ndarray | list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """HF features [B, T, 160] and mask [B, T] (int64) of one clip or a padded batch."""
    out = fe(clips, sampling_rate=SR, padding=True, return_tensors="pt", return_attention_mask=True)
    return out["input_features"], out["attention_mask"].long()


def ours(frontend, clip: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return frontend(torch.from_numpy(clip)[None])


def right_pad(clips: list[np.ndarray], fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(c) for c in clips)
    batch = torch.full((len(clips), width), fill)
    for i, c in enumerate(clips):
        batch[i, : len(c)] = torch.from_numpy(c)
    return batch, torch.tensor([len(c) for c in clips])


def speech_files() -> list[Path]:
    wanted = [DATA / "speech_en_m3_1p01s.wav", DATA / "speech_en_f2_3s.wav"]
    return [p for p in wanted if p.exists()] or sorted(DATA.glob("speech_*.wav"))[:2]


# --------------------------------------------------------------------------- config


def test_config_from_extractor_and_dict(fe):
    config = FeatureConfig.from_extractor(fe)
    assert config == FeatureConfig()
    assert (config.feature_dim, config.min_num_samples) == (160, 560)
    assert config.num_frames(16160) == 99 and config.num_frames(399) == 0
    preprocessor = {  # w2v-bert-2.0's preprocessor_config.json
        "feature_extractor_type": "SeamlessM4TFeatureExtractor",
        "feature_size": 80,
        "num_mel_bins": 80,
        "padding_side": "right",
        "padding_value": 1.0,
        "processor_class": "Wav2Vec2BertProcessor",
        "return_attention_mask": True,
        "sampling_rate": 16000,
        "stride": 2,
    }
    assert FeatureConfig.from_dict(preprocessor) == config
    assert FeatureConfig.from_dict(config.to_dict()) == config
    assert FeatureConfig.from_dict({"sampling_rate": 8000}).high_freq == 4000.0  # HF: sampling_rate // 2
    with pytest.raises(ValueError, match="stride=1"):
        FeatureConfig(stride=1)
    with pytest.raises(TypeError, match="expected a SeamlessM4TFeatureExtractor"):
        FeatureConfig.from_extractor(object())


def test_min_num_samples_is_where_hf_becomes_usable(fe):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # HF divides by zero below the minimum
        below, _ = hf(fe, noise(FeatureConfig().min_num_samples - 1))
    at, mask = hf(fe, noise(FeatureConfig().min_num_samples))
    assert torch.isnan(below).any()  # one frame: var(ddof=1) is NaN
    assert torch.isfinite(at).all() and mask.tolist() == [[1]]


def test_window_and_filterbank_match_hf(frontend, fe):
    torch.testing.assert_close(frontend.window, torch.from_numpy(fe.window), rtol=0, atol=1e-12)
    torch.testing.assert_close(frontend.mel_filters, torch.from_numpy(fe.mel_filters), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- parity with HF


@pytest.mark.parametrize("n", [560, 561, 16000, 16160, 48000 + 37])
@pytest.mark.parametrize("kind", ["noise", "speech_like"])
def test_single_clip_matches_hf(frontend, fe, kind, n):
    clip = noise(n, seed=n) if kind == "noise" else speech_like(n, seed=n)
    ref, ref_mask = hf(fe, clip)
    feats, mask = ours(frontend, clip)
    assert feats.dtype == torch.float32 and mask.dtype == torch.int64
    assert feats.shape == ref.shape and torch.equal(mask, ref_mask)
    torch.testing.assert_close(feats, ref, rtol=0, atol=FEATURE_ATOL)
    # the log-mel before normalisation
    logmel = log_mel_spectrogram(torch.from_numpy(clip)[None], frontend.window, frontend.mel_filters)[0]
    torch.testing.assert_close(logmel, torch.from_numpy(fe._extract_fbank_features(clip)), rtol=0, atol=LOGMEL_ATOL)


def test_odd_frame_count_masks_the_half_padding_row(frontend, fe):
    clip = speech_like(16160)  # 99 frames -> 50 rows, the last one frame 98 + padding
    feats, mask = ours(frontend, clip)
    assert mask.tolist() == [[1] * 49 + [0]]
    assert torch.all(feats[0, -1, 80:] == 1.0)  # padding_value
    torch.testing.assert_close(feats, hf(fe, clip)[0], rtol=0, atol=FEATURE_ATOL)


@pytest.mark.parametrize("path", speech_files(), ids=lambda p: p.name)
def test_real_speech_matches_hf(frontend, fe, path):
    wave, sr = read_audio(path)
    clip = prepare_waveform(wave, sr, target_sr=SR)
    ref, ref_mask = hf(fe, clip)
    feats, mask = ours(frontend, clip)
    assert torch.equal(mask, ref_mask)
    torch.testing.assert_close(feats, ref, rtol=0, atol=FEATURE_ATOL)


def test_padded_batch_matches_hf_and_one_by_one(frontend, fe):
    clips = [speech_like(16160, 1), noise(561, 2), speech_like(48037, 3), speech_like(16000, 4)]
    ref, ref_mask = hf(fe, clips)  # HF pads to the longest clip, frames rounded up to even
    batch, lengths = right_pad(clips, fill=0.3)  # padding content must not matter
    feats, mask = frontend(batch, lengths)
    assert feats.shape == ref.shape and torch.equal(mask, ref_mask)
    torch.testing.assert_close(feats, ref, rtol=0, atol=FEATURE_ATOL)
    for i, clip in enumerate(clips):
        alone, alone_mask = ours(frontend, clip)
        rows = alone.shape[1]
        assert torch.equal(mask[i, :rows], alone_mask[0]) and not mask[i, rows:].any()
        valid = alone_mask[0].bool()
        torch.testing.assert_close(feats[i, :rows][valid], alone[0][valid], rtol=0, atol=BATCH_ATOL)


def test_input_wider_than_longest_clip_adds_masked_rows(frontend, fe):
    clips = [speech_like(16160, 5), speech_like(9000, 6)]
    ref, ref_mask = hf(fe, clips)
    batch, lengths = right_pad(clips)
    wide = torch.nn.functional.pad(batch, [0, 1000])  # 1000 more samples than any clip
    feats, mask = frontend(wide, lengths)
    rows = ref.shape[1]
    assert feats.shape[1] > rows and not mask[:, rows:].any()
    assert torch.equal(mask[:, :rows], ref_mask)
    torch.testing.assert_close(feats[:, :rows], ref, rtol=0, atol=FEATURE_ATOL)


def test_chunking_does_not_change_values(fe):
    clip = torch.from_numpy(speech_like(16000 * 6 + 123, 7))[None]
    whole = TorchFeatureExtractor(FeatureConfig.from_extractor(fe), chunk_rows=0)(clip)
    chunked = TorchFeatureExtractor(FeatureConfig.from_extractor(fe), chunk_rows=64)(clip)
    assert torch.equal(whole[1], chunked[1])
    torch.testing.assert_close(whole[0], chunked[0], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- the documented limit


def test_pure_tone_is_the_documented_limit(frontend, fe):
    # A steady tone gives mel bins that are (nearly) constant over time.  Normalisation divides
    # by sqrt(var + 1e-7) with var ~ 0, so float32 rounding of the mean -- HF sums in float32
    # row by row, we sum in float64 -- is amplified up to 1/sqrt(1e-7) ~ 3162x.  The log-mel
    # itself still agrees to float32 resolution; only the normalised values drift.
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * np.arange(SR) / SR)).astype(np.float32)
    ref_logmel = fe._extract_fbank_features(tone)  # (F, 80)
    logmel = log_mel_spectrogram(torch.from_numpy(tone)[None], frontend.window, frontend.mel_filters)[0]
    torch.testing.assert_close(logmel, torch.from_numpy(ref_logmel), rtol=1e-6, atol=LOGMEL_ATOL)
    assert ref_logmel.std(axis=0).min() < 1e-4  # some bins are flat over time

    ref, ref_mask = hf(fe, tone)
    feats, mask = ours(frontend, tone)
    assert torch.equal(mask, ref_mask)
    error = (feats - ref).abs().max().item()
    speech_error = (ours(frontend, speech_like(SR))[0] - hf(fe, speech_like(SR))[0]).abs().max().item()
    assert error > 100 * speech_error  # far larger than on speech (~1e-6) ...
    assert error < 0.1  # ... but bounded: a few float32 ulps of the log-mel times ~3162

    # digital silence: every bin is exactly log(mel_floor); our float32 mean of identical values
    # is exact, so the features are exactly 0 (HF's row-by-row float32 mean is not: ~3e-3)
    silent, silent_mask = ours(frontend, np.zeros(SR, dtype=np.float32))  # 98 frames, all rows valid
    assert silent_mask.all() and torch.equal(silent, torch.zeros_like(silent))


# --------------------------------------------------------------------------- TorchScript and export


def test_scripted_and_reloaded_equal_eager(frontend, scripted, reloaded):
    clips = [speech_like(16160, 8), speech_like(48037, 9), noise(561, 10)]
    batch, lengths = right_pad(clips)
    single = torch.from_numpy(speech_like(33333, 11))[None]
    for args in ((batch, lengths), (single,), (single, torch.tensor([single.shape[1]]))):
        expected = frontend(*args)
        for compiled in (scripted, reloaded):
            got = compiled(*args)
            assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_too_short_raises_value_error(frontend, scripted, reloaded, fe):
    narrow = torch.zeros(1, 559)
    batch, lengths = torch.zeros(2, 1000), torch.tensor([1000, 500])
    with pytest.raises(ValueError, match="waveform has 559 samples, fewer than the minimum of 560"):
        frontend(narrow)
    with pytest.raises(ValueError, match="a clip has 500 valid samples, fewer than the minimum of 560"):
        frontend(batch, lengths)
    with pytest.raises(ValueError, match="lengths has 1001 samples .* only 1000 columns"):
        frontend(batch, torch.tensor([1000, 1001]))
    with pytest.raises(ValueError, match=r"shape \(B, N\)"):
        frontend(torch.zeros(1000))
    # TorchScript re-raises a scripted `raise ValueError(...)` as torch.jit.Error (a
    # RuntimeError) whose message names the original class: "builtins.ValueError: ...".
    for compiled in (scripted, reloaded):
        with pytest.raises(torch.jit.Error, match="ValueError: waveform has 559 samples.*minimum of 560"):
            compiled(narrow)
        with pytest.raises(torch.jit.Error, match="ValueError: a clip has 500 valid samples.*minimum of 560"):
            compiled(batch, lengths)
    with pytest.raises(ValueError, match="559 samples .* at least 560"):
        compute_input_features_from_wave(fe, noise(559), SR)


def test_torch_export_with_dynamic_batch_and_length(frontend):
    from torch.export import Dim, export

    batch_dim, length_dim = Dim("batch", min=1, max=64), Dim("samples", min=720, max=SR * 600)
    example = right_pad([speech_like(16160, 12), speech_like(9000, 13)])
    program = export(frontend, example, dynamic_shapes=({0: batch_dim, 1: length_dim}, {0: batch_dim}))
    exported = program.module()
    batch, lengths = right_pad([speech_like(48037, 14), noise(720, 15), speech_like(20000, 16)])
    expected = frontend(batch, lengths)
    got = exported(batch, lengths)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


# --------------------------------------------------------------------------- the consumer helper


def test_compute_input_features_from_wave_is_hf_valid_rows(fe):
    clip = speech_like(16160, 17)
    feats = compute_input_features_from_wave(fe, clip, SR)
    ref, ref_mask = hf(fe, clip)
    assert feats.dtype == torch.float32 and feats.shape == (49, 160)
    assert torch.equal(feats, ref[0][ref_mask[0].bool()])


def test_compute_input_features_from_wave_downmixes_and_resamples(fe):
    left = speech_like(44100, 18, sr=44100)
    stereo = np.stack([left, 0.5 * left], axis=1)  # (N, 2) at 44.1 kHz
    feats = compute_input_features_from_wave(fe, stereo, 44100)
    mono = prepare_waveform(stereo, 44100, target_sr=SR)
    ref, ref_mask = hf(fe, mono)
    assert mono.shape == (SR,)
    assert torch.equal(feats, ref[0][ref_mask[0].bool()])
