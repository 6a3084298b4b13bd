"""Audio in: files and arrays to the float32 mono [N] waveform the encoder expects.

:func:`read_audio` reads a file with soundfile; :func:`prepare_waveform` validates any array
(dtype, layout, finiteness), scales integer PCM to [-1, 1), downmixes by the channel mean and
resamples with soxr.  Both run outside the TorchScript artifact, so they may use numpy freely;
every rejection names what was received and what was expected.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from w2vlab._contract import SAMPLE_RATE, AudioTooShortError, InputError

__all__ = ["MAX_CHANNELS", "read_audio", "prepare_waveform", "prepare_clip", "check_clip_length", "pad_waveforms"]

MAX_CHANNELS = 8  # a 2-D axis of at most this many entries is read as the channel axis
_PCM = {  # integer dtype -> (offset, scale): float = (x - offset) / scale
    np.dtype(np.int16): (0.0, 2.0**15),
    np.dtype(np.int32): (0.0, 2.0**31),
    np.dtype(np.uint8): (128.0, 128.0),
}
_RIFF_STREAMING = 0x7FFF0000  # RIFF sizes at or above this are "unknown length" placeholders


def _check_rate(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int in Hz, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise InputError(f"{name} must be a positive number of Hz, got {value}")
    return int(value)


def _check_riff_complete(path: Path) -> None:
    """Raise if a RIFF/WAVE header declares more bytes than the file holds (a cut-off copy)."""
    with path.open("rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
        return
    declared = int.from_bytes(head[4:8], "little")
    actual = path.stat().st_size
    if declared + 8 > actual and declared < _RIFF_STREAMING:
        raise InputError(
            f"{path} is truncated: its RIFF header declares {declared + 8} bytes but the file has "
            f"{actual}; copy or export the file again"
        )


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 in [-1, 1].

    Returns:
        ``(wave, sr)``: wave is ``[N]`` for mono or ``[N, C]`` (channels last) otherwise.
    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a readable audio file (directory, corrupt, truncated, empty).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory; expected an audio file (WAV, FLAC, OGG, ...)")
    _check_riff_complete(path)
    try:
        wave, sr = sf.read(str(path), dtype="float32")  # (N,) or (N, C)
    except RuntimeError as e:  # soundfile's LibsndfileError derives from RuntimeError
        raise InputError(f"cannot read {path} as audio with soundfile: {e}") from e
    if wave.shape[0] == 0:
        raise InputError(f"{path} contains no audio samples")
    return wave, int(sr)


def _to_float(wave: np.ndarray) -> np.ndarray:
    """Any float dtype or int16/int32/uint8 PCM -> float32, same shape."""
    kind = wave.dtype.kind
    if kind == "f":
        return wave.astype(np.float32, copy=False)
    native = wave.dtype.newbyteorder("=") if kind in "iu" else None  # big-endian PCM too
    if native in _PCM:
        offset, scale = _PCM[native]
        return ((wave.astype(np.float64) - offset) / scale).astype(np.float32)
    supported = "float16/32/64 in [-1, 1], or integer PCM int16, int32, uint8"
    raise TypeError(f"unsupported audio dtype {wave.dtype}; expected {supported}")


def _downmix(wave: np.ndarray) -> np.ndarray:
    """[N] -> [N]; [N, C] or [C, N] with C <= MAX_CHANNELS < N -> mean over channels, [N]."""
    if wave.ndim == 1:
        return wave
    rows, cols = wave.shape
    if cols <= MAX_CHANNELS < rows:
        return wave.mean(axis=1, dtype=np.float64).astype(np.float32)  # channels last
    if rows <= MAX_CHANNELS < cols:
        return wave.mean(axis=0, dtype=np.float64).astype(np.float32)  # channels first
    raise InputError(
        f"cannot tell the channel axis of audio with shape {tuple(wave.shape)}: expected exactly one "
        f"axis of at most {MAX_CHANNELS} channels and the other of more samples; "
        f"downmix yourself and pass a 1-D [N] array"
    )


def prepare_waveform(wave: np.ndarray | torch.Tensor, sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Validate, scale, downmix and resample audio to what the encoder expects.

    Args:
        wave: numpy array or torch tensor, float (expected in [-1, 1]) or int16/int32/uint8
            PCM; ``[N]``, ``[N, C]`` or ``[C, N]`` with ``C <= MAX_CHANNELS``.
        sr: sample rate of ``wave`` in Hz.
        target_sr: sample rate of the result in Hz.
    Returns:
        float32 ``[M]`` mono at ``target_sr``, ``M = round(N * target_sr / sr)`` (no truncation).
    Raises:
        TypeError: not an array, unsupported dtype (bool, complex, other ints), non-int rate.
        ValueError: wrong rank, ambiguous channel axis, empty, NaN/Inf samples, rate <= 0.
    """
    sr, target_sr = _check_rate("sr", sr), _check_rate("target_sr", target_sr)
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu()
        wave = (wave.float() if wave.dtype == torch.bfloat16 else wave).numpy()  # numpy has no bfloat16
    if not isinstance(wave, np.ndarray):
        raise TypeError(f"audio must be a numpy array or torch tensor, got {type(wave).__name__}")
    if wave.ndim not in (1, 2):
        raise InputError(
            f"audio must be [N] mono, [N, C] channels-last or [C, N] channels-first; received shape {tuple(wave.shape)}"
        )
    if wave.size == 0:
        raise InputError(f"audio is empty: received shape {tuple(wave.shape)}, expected at least one sample")
    wave = _to_float(wave)
    bad = int(np.count_nonzero(~np.isfinite(wave)))
    if bad:
        raise InputError(
            f"audio has {bad} NaN/Inf values out of {wave.size} (shape {tuple(wave.shape)}); expected finite samples"
        )
    peak = float(np.abs(wave).max())
    if peak > 1.0:
        warnings.warn(
            f"float audio peaks at {peak:.3g}, outside [-1, 1]; if this is integer PCM cast to float, "
            f"pass the integer array or divide by 32768",
            stacklevel=2,
        )
    wave = _downmix(wave)  # (N,)
    if sr != target_sr:
        n = wave.shape[0]
        wave = soxr.resample(np.ascontiguousarray(wave), sr, target_sr, quality="HQ")
        if wave.shape[0] == 0:
            raise InputError(f"audio of {n} samples at {sr} Hz resamples to no samples at {target_sr} Hz")
    return np.ascontiguousarray(wave, dtype=np.float32)


def check_clip_length(
    num_samples: int, sample_rate: int, min_num_samples: int, received: tuple[int, int] | None = None
) -> None:
    """Raise :class:`~w2vlab._contract.AudioTooShortError` when a clip of ``num_samples`` at
    ``sample_rate`` is shorter than ``min_num_samples``: the one too-short message, for the artifact,
    the corpus and the features path alike.

    Args:
        received: ``(samples, rate)`` of the clip as given, before resampling, when it differed.
    """
    if num_samples >= min_num_samples:
        return
    given, rate = received if received is not None else (num_samples, sample_rate)
    resampled = f", {num_samples} samples at {sample_rate} Hz after resampling" if rate != sample_rate else ""
    two_frames = min_num_samples == round(0.035 * sample_rate)  # 25 ms + 10 ms: the extractor's own minimum
    who, why = ("the feature extractor", "two analysis frames") if two_frames else ("the model", "the model's minimum")
    raise AudioTooShortError(
        f"audio too short: received {given} samples at {rate} Hz ({given / rate:.3f} s){resampled}; "
        f"{who} needs at least {min_num_samples} samples at {sample_rate} Hz "
        f"({min_num_samples / sample_rate:.3f} s, {why}); pad the clip (e.g. with silence) "
        f"to at least that length or leave it out"
    )


def prepare_clip(
    wave: np.ndarray | torch.Tensor, sr: int, min_num_samples: int, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """One clip as the model's input pipeline takes it: :func:`prepare_waveform` (validate, scale,
    downmix, resample to ``sample_rate``), then :func:`check_clip_length`.

    Returns:
        float32 ``[M]`` mono at ``sample_rate``, ``M >= min_num_samples``.
    Raises:
        AudioTooShortError: fewer than ``min_num_samples`` after resampling (a ``ValueError``);
        and whatever :func:`prepare_waveform` raises.
    """
    mono = prepare_waveform(wave, sr, sample_rate)  # (M,)
    received = max(tuple(wave.shape))  # samples per channel: the channel axis is the short one
    check_clip_length(len(mono), sample_rate, min_num_samples, (received, sr))
    return mono


def pad_waveforms(waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D float clips into one batch: (waveforms [B, N_max] float32, lengths [B] int64)."""
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
    return batch, lengths
