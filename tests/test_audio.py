"""w2vlab._audio: fixtures read and prepare; bad inputs fail with errors that name what was received."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from w2vlab._audio import prepare_waveform, read_audio

DATA = Path(__file__).parent / "data"
WAVS = sorted(DATA.glob("*.wav"))
PCM16 = 1.0 / 32768


def test_fixtures_present():
    names = {p.name for p in WAVS}
    assert {"speech_stereo_44k.wav", "speech_8k.wav", "speech_int16.wav", "speech_float32.wav"} <= names
    assert len(names) >= 10, f"expected the fixtures of scripts/make_audio_fixtures.sh in {DATA}"


@pytest.mark.parametrize("path", WAVS, ids=[p.stem for p in WAVS])
def test_every_fixture_reads_and_prepares(path):
    info = sf.info(str(path))
    wave, sr = read_audio(path)
    assert wave.dtype == np.float32 and sr == info.samplerate
    assert wave.shape == ((info.frames,) if info.channels == 1 else (info.frames, info.channels))
    mono = prepare_waveform(wave, sr)
    assert mono.dtype == np.float32 and mono.ndim == 1 and np.isfinite(mono).all()
    assert abs(len(mono) - info.frames * 16000 / sr) <= 1  # resampled, never truncated
    assert 0.01 < np.sqrt(np.mean(mono**2)) and np.abs(mono).max() <= 1.0  # speech, not silence


def test_stereo_44k_to_mono_16k():
    wave, sr = read_audio(DATA / "speech_stereo_44k.wav")
    assert wave.shape == (33075, 2) and sr == 44100
    mono = prepare_waveform(wave, sr, 16000)
    assert abs(len(mono) - 33075 * 16000 / 44100) <= 1
    # the downmix is the channel mean (atol: float64 vs float32 mean, then the resampler)
    np.testing.assert_allclose(mono, prepare_waveform(wave.mean(axis=1), sr), atol=1e-6)
    # channels-first is the same clip
    np.testing.assert_array_equal(prepare_waveform(np.ascontiguousarray(wave.T), sr), mono)


def test_resampling_matches_analytic_sine():
    t44, t16 = np.arange(44100) / 44100, np.arange(16000) / 16000
    out = prepare_waveform((0.5 * np.sin(2 * np.pi * 1000 * t44)).astype(np.float32), 44100, 16000)
    want = 0.5 * np.sin(2 * np.pi * 1000 * t16)
    assert len(out) == 16000
    np.testing.assert_allclose(out[500:-500], want[500:-500], atol=1e-3)  # edges: filter transients


@pytest.mark.parametrize("name", ["speech_int16.wav", "speech_stereo_44k.wav"])
def test_int16_equals_soundfile_float_read(name):
    ints, sr = sf.read(str(DATA / name), dtype="int16")
    floats, _ = sf.read(str(DATA / name), dtype="float32")
    np.testing.assert_allclose(prepare_waveform(ints, sr, sr), prepare_waveform(floats, sr, sr), atol=PCM16)


def test_int16_file_matches_float32_file():
    a, _ = read_audio(DATA / "speech_int16.wav")
    b, _ = read_audio(DATA / "speech_float32.wav")
    np.testing.assert_allclose(a, b, atol=PCM16)  # same sentence, int16 rounding only


@pytest.mark.parametrize(
    "pcm, want",
    [
        (np.array([-(2**15), 0, 2**14], np.int16), [-1.0, 0.0, 0.5]),
        (np.array([-(2**31), 0, 2**30], np.int32), [-1.0, 0.0, 0.5]),
        (np.array([0, 128, 192], np.uint8), [-1.0, 0.0, 0.5]),
        (np.array([0, 2**14], ">i2"), [0.0, 0.5]),
    ],
    ids=["int16", "int32", "uint8", "int16_big_endian"],
)
def test_integer_pcm_scaling(pcm, want):
    np.testing.assert_array_equal(prepare_waveform(pcm, 16000), np.array(want, np.float32))


def test_torch_tensor_input():
    wave, sr = read_audio(DATA / "speech_stereo_44k.wav")
    want = prepare_waveform(wave, sr)
    np.testing.assert_array_equal(prepare_waveform(torch.from_numpy(wave), sr), want)
    np.testing.assert_array_equal(prepare_waveform(torch.from_numpy(wave.T.copy()), sr), want)
    ints = torch.tensor([-(2**15), 0, 2**14], dtype=torch.int16)
    np.testing.assert_array_equal(prepare_waveform(ints, 16000), [-1.0, 0.0, 0.5])
    half = prepare_waveform(torch.tensor([0.25, -0.5], dtype=torch.bfloat16), 16000)
    np.testing.assert_array_equal(half, np.array([0.25, -0.5], np.float32))


def test_float_out_of_range_warns_but_int_full_scale_does_not():
    with pytest.warns(UserWarning, match="peaks at 3.2e"):
        prepare_waveform(np.array([0.0, 32000.0], np.float32), 16000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_waveform(np.array([-(2**15), 2**15 - 1], np.int16), 16000)


def _with_nan(n_bad: int, value: float) -> np.ndarray:
    x = np.zeros(100, np.float32)
    x[:n_bad] = value
    return x


@pytest.mark.parametrize(
    "wave, sr, error, match",
    [
        (np.zeros(0, np.float32), 16000, ValueError, r"empty.*\(0,\)"),
        (np.zeros((0, 2), np.float32), 16000, ValueError, r"empty.*\(0, 2\)"),
        (_with_nan(3, np.nan), 16000, ValueError, "3 NaN/Inf"),
        (_with_nan(1, np.inf), 16000, ValueError, "1 NaN/Inf"),
        (np.zeros((2, 2, 100), np.float32), 16000, ValueError, r"received shape \(2, 2, 100\)"),
        (np.array(0.5, np.float32), 16000, ValueError, r"received shape \(\)"),
        (np.zeros((4, 4), np.float32), 16000, ValueError, r"channel axis.*\(4, 4\)"),
        (np.zeros((100, 100), np.float32), 16000, ValueError, r"channel axis.*\(100, 100\)"),
        (np.zeros(100, bool), 16000, TypeError, "dtype bool"),
        (np.zeros(100, np.complex64), 16000, TypeError, "dtype complex64"),
        (np.zeros(100, np.int64), 16000, TypeError, "dtype int64"),
        (np.zeros(100, np.int8), 16000, TypeError, "dtype int8"),
        (torch.zeros(100, dtype=torch.int64), 16000, TypeError, "dtype int64"),
        ([0.0, 0.1], 16000, TypeError, "got list"),
        (np.zeros(100, np.float32), 0, ValueError, "got 0"),
        (np.zeros(100, np.float32), -8000, ValueError, "got -8000"),
        (np.zeros(100, np.float32), 16000.0, TypeError, "got float 16000.0"),
        (np.zeros(100, np.float32), "16000", TypeError, "got str '16000'"),
        (np.zeros(100, np.float32), True, TypeError, "got bool True"),
        (np.zeros(1, np.float32), 44100, ValueError, "1 samples at 44100 Hz"),
    ],
    ids=[
        "empty",
        "empty_2d",
        "nan",
        "inf",
        "rank3",
        "rank0",
        "ambiguous_small",
        "ambiguous_large",
        "bool",
        "complex",
        "int64",
        "int8",
        "torch_int64",
        "list",
        "sr_zero",
        "sr_negative",
        "sr_float",
        "sr_str",
        "sr_bool",
        "resamples_to_nothing",
    ],
)
def test_bad_waveform(wave, sr, error, match):
    with pytest.raises(error, match=match):
        prepare_waveform(wave, sr)


def test_bad_target_sr():
    with pytest.raises(ValueError, match="target_sr .* got 0"):
        prepare_waveform(np.zeros(100, np.float32), 16000, target_sr=0)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        read_audio(path)


def test_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        read_audio(tmp_path)


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 10)
    with pytest.raises(ValueError, match=r"cannot read .*notes\.wav.*soundfile") as info:
        read_audio(path)
    assert isinstance(info.value.__cause__, RuntimeError)  # the soundfile error is chained


@pytest.mark.parametrize("keep", [20, 44 + 1000], ids=["header", "data"])
def test_truncated_wav(tmp_path, keep):
    path = tmp_path / "cut.wav"
    path.write_bytes((DATA / "speech_en_m3_2s.wav").read_bytes()[:keep])
    with pytest.raises(ValueError, match=r"cut\.wav.*truncated"):
        read_audio(path)


def test_wav_without_samples(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(str(path), np.zeros(0, np.int16), 16000, subtype="PCM_16")
    with pytest.raises(ValueError, match=r"silent\.wav contains no audio samples"):
        read_audio(path)
