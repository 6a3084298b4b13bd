"""W2V-BERT 2.0 input features in pure torch: a scriptable ``SeamlessM4TFeatureExtractor``.

HF's extractor is numpy with a Python loop over frames, so it cannot live inside a
TorchScript artifact.  :class:`TorchFeatureExtractor` reproduces it with batched tensor ops
(``unfold`` framing, one batched ``rfft``) and compiles with ``torch.jit.script``.

The pipeline, read from ``feature_extraction_seamless_m4t.py`` and ``audio_utils.spectrogram``:

1. waveform (float32) * 2**15, then float64 (Kaldi's 16-bit scale);
2. frames of 400 samples every 160, no centring: ``F = 1 + (N - 400) // 160`` frames;
3. per frame: subtract the mean, pre-emphasis 0.97 inside the frame (first sample * 0.03),
   Povey window (symmetric Hann(400) ** 0.85), zero-pad to 512, rfft -> 257 bins;
4. the spectrum is stored as complex64 (HF's buffer dtype), the power taken in float64;
5. 80 triangular filters on the Kaldi mel scale, 20 Hz .. sr // 2, floor 1.19e-7, natural log,
   float32;
6. per clip and mel bin: (x - mean) / sqrt(var(ddof=1) + 1e-7) over the clip's frames, in
   float32 arithmetic;
7. pad to the batch's longest clip, frame count rounded up to a multiple of ``stride`` (value
   ``padding_value``), stack ``stride`` frames per row: [B, T, 80 * stride]; row ``r``'s mask
   is frame ``stride * r + 1``'s, so an odd last frame gives a masked, half-padding row.

Precision.  Steps 1-5 run in float64 and reproduce the complex64 rounding of step 4; that
rounding absorbs the float64 differences of a different operation order, and the log-mel
matches HF bit for bit on the test clips (a float32 pipeline differs by up to ~1.7 in
low-energy bins).  Step 6 keeps HF's float32 mean, centring and division but sums in float64
(HF sums in float32, row by row): normalised features differ by ~1e-6 on speech and ~1e-5 on
white noise.  Where a mel bin is (nearly) constant over time -- a pure tone, digital silence
-- its variance is ~0 and the division by ``sqrt(var + 1e-7)`` amplifies float32 rounding
by up to ~3000x, in HF as here; that is a limit of the feature definition, not of the port.

Export.  The compute path reads no tensor values: the output has ``ceil(F / stride)`` rows,
computed from ``N`` (the input's width) alone, and ``torch.export`` with dynamic batch and
length traces it (``N >= 720``: two rows or more, export's usual 0/1 specialisation).  The
one data-dependent read is :func:`check_lengths`, which needs a Python int to name a too-short
clip in its ``ValueError``; under ``torch.export`` it becomes ``torch._check`` asserts.
"""

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from w2vlab._contract import SAMPLE_RATE

__all__ = [
    "FeatureConfig",
    "TorchFeatureExtractor",
    "povey_window",
    "kaldi_mel_filterbank",
    "num_frames",
    "check_lengths",
    "frame_rows",
    "log_mel_rows",
    "log_mel_spectrogram",
    "normalize_per_mel_bin",
    "frame_mask",
    "stack_frames",
    "extractor_inputs",
    "extractor_valid_rows",
    "compute_input_features_from_wave",
]


@dataclass(frozen=True)
class FeatureConfig:
    """Fields of w2v-bert-2.0's ``SeamlessM4TFeatureExtractor`` (HF hard-codes all but four)."""

    sampling_rate: int = SAMPLE_RATE  # Hz; the extractor refuses other rates
    num_mel_bins: int = 80  # mel filters per frame
    stride: int = 2  # frames stacked per output row: feature_dim = num_mel_bins * stride
    padding_value: float = 1.0  # value of padded frames (w2v-bert-2.0's config; HF's default is 0.0)
    frame_length: int = 400  # samples per frame (25 ms)
    hop_length: int = 160  # samples between frame starts (10 ms)
    fft_length: int = 512  # frames are zero-padded to this before the rfft
    preemphasis: float = 0.97  # x[t] - 0.97 * x[t-1] within each frame
    mel_floor: float = 1.192092955078125e-07  # mel energies are clamped to this before the log
    low_freq: float = 20.0  # Hz, lower edge of the first mel filter
    high_freq: float = 8000.0  # Hz, upper edge of the last mel filter (HF: sampling_rate // 2)
    variance_epsilon: float = 1e-7  # added to the per-bin variance before the square root

    def __post_init__(self) -> None:
        if self.stride < 2:
            raise ValueError(
                f"stride={self.stride} but the extractor needs stride >= 2 "
                "(its attention mask keeps frames with index % stride == 1)"
            )
        if not 0 < self.hop_length <= self.frame_length <= self.fft_length:
            raise ValueError(
                f"expected 0 < hop_length <= frame_length <= fft_length, received "
                f"hop_length={self.hop_length}, frame_length={self.frame_length}, fft_length={self.fft_length}"
            )
        if not 0.0 <= self.low_freq < self.high_freq <= self.sampling_rate / 2:
            raise ValueError(
                f"expected 0 <= low_freq < high_freq <= sampling_rate / 2, received low_freq={self.low_freq}, "
                f"high_freq={self.high_freq}, sampling_rate={self.sampling_rate}"
            )

    @property
    def feature_dim(self) -> int:
        """Width of one output row: ``num_mel_bins * stride`` (160)."""
        return self.num_mel_bins * self.stride

    @property
    def min_num_samples(self) -> int:
        """Shortest waveform that gives usable features: two frames (560 samples at 16 kHz).

        One frame has no sample variance (HF returns NaN for 400-559 samples) and no frame
        with odd index, so its only stacked row is masked; fewer than 400 samples give no frame.
        """
        return self.frame_length + self.hop_length

    def num_frames(self, num_samples: int) -> int:
        """Frames in a waveform of ``num_samples`` samples (0 when shorter than one frame)."""
        return num_frames(num_samples, self.frame_length, self.hop_length)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FeatureConfig":
        """Build from :meth:`to_dict` output or a ``preprocessor_config.json`` dict (unknown keys ignored).

        HF derives the top mel edge from the rate, so a dict without ``high_freq`` gets
        ``sampling_rate // 2``.
        """
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for name, value in d.items():
            if name in fields and value is not None:
                kwargs[name] = int(value) if fields[name] in (int, "int") else float(value)
        if "high_freq" not in kwargs and "sampling_rate" in kwargs:
            kwargs["high_freq"] = float(kwargs["sampling_rate"] // 2)
        return cls(**kwargs)

    @classmethod
    def from_extractor(cls, fe: Any) -> "FeatureConfig":
        """Read the configurable fields of an HF ``SeamlessM4TFeatureExtractor``."""
        missing = [k for k in ("sampling_rate", "num_mel_bins", "stride", "padding_value") if not hasattr(fe, k)]
        if missing:
            raise TypeError(f"expected a SeamlessM4TFeatureExtractor, received {type(fe).__name__} without {missing}")
        return cls.from_dict(
            {
                "sampling_rate": fe.sampling_rate,
                "num_mel_bins": fe.num_mel_bins,
                "stride": fe.stride,
                "padding_value": fe.padding_value,
            }
        )


# --------------------------------------------------------------------------- window and filterbank (built once)


def povey_window(frame_length: int = 400) -> Tensor:
    """Kaldi's Povey window, symmetric Hann ** 0.85, as numpy's ``hanning`` computes it.

    Returns:
        Tensor: float64, shape ``(frame_length,)``
    """
    n = torch.arange(1 - frame_length, frame_length, 2, dtype=torch.float64)
    hann = 0.5 + 0.5 * torch.cos(math.pi * n / (frame_length - 1))
    return hann.pow(0.85)


def _hz_to_kaldi_mel(freq: Tensor) -> Tensor:
    return 1127.0 * torch.log(1.0 + freq / 700.0)


def kaldi_mel_filterbank(
    num_mel_bins: int = 80,
    fft_length: int = 512,
    sampling_rate: int = SAMPLE_RATE,
    low_freq: float = 20.0,
    high_freq: float = 8000.0,
) -> Tensor:
    """Triangular filters on the Kaldi mel scale, triangularised in mel space.

    HF ``mel_filter_bank(..., norm=None, mel_scale="kaldi", triangularize_in_mel_space=True)``:
    filter edges are evenly spaced in mel (numpy ``linspace`` arithmetic), bins are placed at
    the mel value of their centre frequency.

    Returns:
        Tensor: float64, shape ``(fft_length // 2 + 1, num_mel_bins)``
    """
    num_bins = fft_length // 2 + 1
    edges = torch.tensor([low_freq, high_freq], dtype=torch.float64)
    mel_lo, mel_hi = _hz_to_kaldi_mel(edges).tolist()
    # numpy.linspace: start + arange * step, last point set to stop
    step = (mel_hi - mel_lo) / (num_mel_bins + 1)
    mel_edges = torch.arange(num_mel_bins + 2, dtype=torch.float64) * step + mel_lo  # (M + 2,)
    mel_edges[-1] = mel_hi
    bin_width = sampling_rate / ((num_bins - 1) * 2)
    bin_mels = _hz_to_kaldi_mel(bin_width * torch.arange(num_bins, dtype=torch.float64))  # (K,)
    widths = torch.diff(mel_edges)  # (M + 1,)
    slopes = mel_edges.unsqueeze(0) - bin_mels.unsqueeze(1)  # (K, M + 2)
    down = -slopes[:, :-2] / widths[:-1]  # (K, M)
    up = slopes[:, 2:] / widths[1:]  # (K, M)
    return torch.clamp(torch.minimum(down, up), min=0.0)


# --------------------------------------------------------------------------- scriptable steps


def num_frames(num_samples: int, frame_length: int = 400, hop_length: int = 160) -> int:
    """Frames without centring: ``1 + (num_samples - frame_length) // hop_length``, at least 0."""
    if num_samples < frame_length:
        return 0
    return 1 + (num_samples - frame_length) // hop_length


def check_waveform(waveform: Tensor, min_num_samples: int) -> None:
    """Raise ``ValueError`` unless ``waveform`` is float ``(B, N)`` with ``N >= min_num_samples``."""
    if waveform.dim() != 2:
        raise ValueError(f"waveform must have shape (B, N), received {waveform.dim()} dims {list(waveform.shape)}")
    if not waveform.is_floating_point():
        raise ValueError(
            "waveform must be floating point in [-1, 1], received an integer tensor; divide 16-bit PCM by 32768"
        )
    if waveform.size(1) < min_num_samples:
        raise ValueError(
            f"waveform has {waveform.size(1)} samples, fewer than the minimum of {min_num_samples} "
            "(two analysis frames)"
        )


def check_lengths(lengths: Tensor, batch_size: int, num_samples: int, min_num_samples: int) -> Tensor:
    """Validate per-clip sample counts; returns them as int64.

    The only place that reads tensor values: a ``ValueError`` that names the offending
    length needs it as a Python int (``int(lengths.min())``).  Under ``torch.export`` the
    same bounds become ``torch._check`` runtime asserts on unbacked ints instead.

    Args:
        lengths (Tensor): integer, shape ``(B,)``, valid samples per clip
    """
    if lengths.dim() != 1 or lengths.size(0) != batch_size:
        raise ValueError(
            f"lengths must have shape ({batch_size},) to match the waveform batch, received {list(lengths.shape)}"
        )
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise ValueError("lengths must be an integer tensor of sample counts, received a non-integer tensor")
    lengths = lengths.to(torch.int64)
    if not torch.jit.is_scripting():  # (this block is not compiled by torch.jit.script)
        if torch.compiler.is_exporting():
            torch._check(lengths.min().item() >= min_num_samples)
            torch._check(lengths.max().item() <= num_samples)
            return lengths
    shortest = int(lengths.min())
    longest = int(lengths.max())
    if shortest < min_num_samples:
        raise ValueError(
            f"a clip has {shortest} valid samples, fewer than the minimum of {min_num_samples} "
            "(two analysis frames); pad or drop clips that short"
        )
    if longest > num_samples:
        raise ValueError(f"lengths has {longest} samples for a clip but the waveform has only {num_samples} columns")
    return lengths


def clip_rows(
    lengths: Tensor | None, batch: int, num_samples: int, frame_length: int, hop_length: int, stride: int
) -> Tensor:
    """Stacked rows that belong to each clip, an odd frame count's half row included: ``ceil(frames / stride)``.

    Toolkit pooling (:data:`w2vlab._contract.POOLINGS`) pools exactly these rows.

    Args:
        lengths (Tensor): int64, shape ``(B,)``, checked valid samples per clip; ``None``: all ``num_samples``
    Returns:
        Tensor: int64, shape ``(B,)``
    """
    if lengths is None:
        frames = num_frames(num_samples, frame_length, hop_length)
        return torch.full([batch], (frames + stride - 1) // stride, dtype=torch.int64)
    frames = torch.div(lengths - frame_length, hop_length, rounding_mode="floor") + 1
    return torch.div(frames + stride - 1, stride, rounding_mode="floor")


def check_clip_rows(clip_rows: Tensor, attention_mask: Tensor) -> Tensor:
    """Validate ``clip_rows`` against the extractor's mask; returns it as int64.

    A clip's rows are its rows with mask 1, plus one for the half row of an odd frame count:
    ``mask.sum(1) <= clip_rows <= mask.sum(1) + 1``, and no more than the batch's rows.

    Args:
        clip_rows (Tensor): integer, shape ``(B,)``
        attention_mask (Tensor): integer or bool, shape ``(B, T)``
    """
    batch, rows = attention_mask.size(0), attention_mask.size(1)
    if clip_rows.dim() != 1 or clip_rows.size(0) != batch:
        raise ValueError(f"clip_rows must have shape ({batch},), one count per clip; received {list(clip_rows.shape)}")
    if clip_rows.is_floating_point() or clip_rows.is_complex() or clip_rows.dtype == torch.bool:
        raise ValueError("clip_rows must be an integer tensor of row counts, received a non-integer tensor")
    clip_rows = clip_rows.to(torch.int64)
    masked = attention_mask.to(torch.int64).sum(1).to(clip_rows.device)  # (B,)
    bad = (clip_rows < masked) | (clip_rows > masked + 1) | (clip_rows > rows)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0, 0])
        raise ValueError(
            f"clip_rows[{i}] = {int(clip_rows[i])} but the mask gives that clip {int(masked[i])} rows of {rows}; "
            "expected its mask's rows, or one more when its frame count is odd (the extractor's half row): "
            "ceil(frames / stride), frames = 1 + (samples - 400) // 160 at 16 kHz"
        )
    return clip_rows


def frame_rows(waveform: Tensor, width: int = 400, hop_length: int = 160, stride: int = 2) -> Tensor:
    """Frames grouped by output row, as a view: ``[:, k, r]`` is the frame at ``(stride * r + k) * hop_length``.

    No padding is added: there are ``T = 1 + (N - width - (stride - 1) * hop_length) // (stride * hop_length)``
    rows, so an input right-padded with ``(stride - 1) * hop_length`` samples gives
    ``T = ceil(F / stride)`` rows for its ``F = 1 + (N - width) // hop_length`` frames, the
    frames past ``F`` reading the padding.  ``T`` is a plain expression in ``N`` and the
    ``(B, stride, T)`` order lets matmuls fold the leading axes, so ``torch.export`` needs no
    divisibility guard.  ``stride=1`` is plain framing.

    Args:
        waveform (Tensor): shape ``(B, N)``

    Returns:
        Tensor: same dtype, shape ``(B, stride, T, width)``, a view of ``waveform``
    """
    rows = waveform.unfold(-1, width + (stride - 1) * hop_length, stride * hop_length)  # (B, T, span)
    return rows.unfold(-1, width, hop_length).transpose(1, 2)  # (B, s, T, width)


def _log_mel_segment(
    padded: Tensor,
    window: Tensor,
    mel_filters: Tensor,
    frame_length: int,
    hop_length: int,
    fft_length: int,
    stride: int,
    preemphasis: float,
    mel_floor: float,
    in_place: bool = True,
) -> Tensor:
    """:func:`log_mel_rows` of a waveform already right-padded by its ``extra`` samples.

    ``in_place=False`` (used under ``torch.export``) centres and windows the frames without first
    copying them out of the strided view: the same values, and AOTInductor compiles it much
    faster (the index simplification of the copied view took the time; docs/benchmark.md, "Why
    the code is as it is"); eagerly and in TorchScript the copy plus in-place updates is faster.

    Returns:
        Tensor: float32, shape ``(B, stride, T, M)``
    """
    x = padded.to(torch.float64)  # (B, n)
    mean = frame_rows(x, fft_length, hop_length, stride)[..., :frame_length].mean(dim=-1, keepdim=True)
    emphasised = torch.nn.functional.pad(x, [1, -1])  # (B, n): x[i - 1]
    emphasised.mul_(-preemphasis).add_(x)  # x[i] - 0.97 x[i - 1]
    frames = frame_rows(emphasised, fft_length, hop_length, stride)  # (B, s, T, fft) view
    padded_window = torch.nn.functional.pad(window, [0, fft_length - frame_length])  # (fft,)
    if in_place:
        frames = frames.contiguous()
        frames.sub_((1.0 - preemphasis) * mean)  # (B, s, T, 1) broadcast
        frames.mul_(padded_window)
    else:
        frames = (frames - (1.0 - preemphasis) * mean) * padded_window
    spectrum = torch.fft.rfft(frames, dim=-1)  # (B, s, T, K) complex128
    # HF stores the spectrum as complex64: round in place, then |X|^2 in float64
    parts = torch.view_as_real(spectrum)  # (B, s, T, K, 2) float64 view
    parts.copy_(parts.to(torch.float32))
    parts.mul_(parts)
    power = parts[..., 0] + parts[..., 1]  # (B, s, T, K)
    mel = torch.matmul(power, mel_filters)  # (B, s, T, M)
    mel.mul_(1073741824.0)  # HF scales the waveform by 2**15: (2**15) ** 2 on the energies, exact
    return torch.log_(mel.clamp_min_(mel_floor)).to(torch.float32)


def log_mel_rows(
    waveform: Tensor,
    window: Tensor,
    mel_filters: Tensor,
    frame_length: int = 400,
    hop_length: int = 160,
    fft_length: int = 512,
    stride: int = 2,
    preemphasis: float = 0.97,
    mel_floor: float = 1.192092955078125e-07,
    chunk_rows: int = 0,
) -> Tensor:
    """Kaldi-style log-mel energies in the :func:`frame_rows` layout, as HF's ``spectrogram(...)``.

    HF, per frame: ``b = frame - mean(frame)``; ``b[i] -= 0.97 * b[i - 1]`` (``b[0] *= 0.03``);
    ``b *= window``; ``rfft(b, 512)`` stored as complex64; ``|.|^2`` in float64; mel; floor; log.
    Here the same values come from fewer passes over memory, by rewrites that are exact up to
    float64 rounding, which the complex64 storage then absorbs (the log-mel matches HF bit
    for bit on the clips in the tests):

    * pre-emphasis runs once on the waveform: for ``i >= 1``,
      ``b[i] = (x[i] - 0.97 x[i-1]) - 0.03 * mean``; ``b[0]`` is irrelevant, the Povey window
      is 0 there;
    * frames are cut ``fft_length`` wide and the window zero-padded, so the FFT needs no
      padding copy;
    * HF's ``* 2**15`` on the waveform is applied to the mel energies as ``* 2**30``, exact
      for a power of two.

    ``chunk_rows > 0`` processes that many rows at a time: the same per-frame arithmetic with
    bounded temporaries, which on long clips saves more time (page faults on fresh memory)
    than the loop costs.  Under ``torch.export`` the whole clip is done at once.

    Args:
        waveform (Tensor): float32, shape ``(B, N)``, in [-1, 1]; ``N >= frame_length``
        window (Tensor): float64, shape ``(frame_length,)``, ``window[0] == 0``
        mel_filters (Tensor): float64, shape ``(fft_length // 2 + 1, M)``

    Returns:
        Tensor: float32, shape ``(B, stride, T, M)``, ``T = ceil(F / stride)``; frames past
        ``F = 1 + (N - frame_length) // hop_length`` are computed on zero padding
    """
    extra = (stride - 1) * hop_length + fft_length - frame_length
    padded = torch.nn.functional.pad(waveform.to(torch.float32), [0, extra])  # (B, N + extra)
    exporting = False
    if not torch.jit.is_scripting():  # (this block is not compiled by torch.jit.script)
        exporting = torch.compiler.is_exporting()
    rows = 1 + (waveform.size(1) - frame_length) // (stride * hop_length)
    if exporting or chunk_rows <= 0 or rows <= chunk_rows:
        return _log_mel_segment(
            padded,
            window,
            mel_filters,
            frame_length,
            hop_length,
            fft_length,
            stride,
            preemphasis,
            mel_floor,
            not exporting,
        )
    step = stride * hop_length
    span = (chunk_rows - 1) * step + fft_length + (stride - 1) * hop_length  # samples behind chunk_rows rows
    pieces = []
    for first in range(0, rows, chunk_rows):
        segment = padded[:, first * step : first * step + span]  # the last one is shorter: fewer rows
        pieces.append(
            _log_mel_segment(
                segment, window, mel_filters, frame_length, hop_length, fft_length, stride, preemphasis, mel_floor
            )
        )
    return torch.cat(pieces, dim=2)  # (B, s, T, M)


def log_mel_spectrogram(
    waveform: Tensor,
    window: Tensor,
    mel_filters: Tensor,
    frame_length: int = 400,
    hop_length: int = 160,
    fft_length: int = 512,
    preemphasis: float = 0.97,
    mel_floor: float = 1.192092955078125e-07,
) -> Tensor:
    """Log-mel energies of every frame, batched HF ``_extract_fbank_features`` (before normalisation).

    Args:
        waveform (Tensor): float32, shape ``(B, N)``, in [-1, 1]; ``N >= frame_length``

    Returns:
        Tensor: float32, shape ``(B, F, M)``, ``F = 1 + (N - frame_length) // hop_length``
    """
    rows = log_mel_rows(
        waveform, window, mel_filters, frame_length, hop_length, fft_length, 1, preemphasis, mel_floor
    )  # (B, 1, F, M)
    return rows[:, 0]


def normalize_per_mel_bin(
    features: Tensor, valid: Tensor, variance_epsilon: float = 1e-7, padding_value: float = 1.0
) -> Tensor:
    """Zero mean, unit variance (ddof=1) per clip and mel bin, over each clip's valid frames.

    Frames may be laid out over several axes (``(B, F, M)``, or ``(B, stride, T, M)``);
    statistics run over every axis but the first and last.  Invalid frames are set to
    ``padding_value``.  As in HF, the mean and the standard deviation are float32 values and
    the centring, squaring and division are float32 operations: with few frames or a nearly
    constant bin the centred values are dominated by that rounding, and reproducing it keeps
    two-frame clips within ~1e-7 of HF (float64 centring: ~1e-4).  The sums accumulate in
    float64 (HF: float32, row by row), which is closer to HF on long clips than a float32
    sum in another order.

    Args:
        features (Tensor): float32, shape ``(B, *frames, M)``
        valid (Tensor): bool, shape ``(B, *frames)``; at least two valid frames per clip

    Returns:
        Tensor: float32, shape ``(B, *frames, M)``
    """
    dims = [d for d in range(1, features.dim() - 1)]
    valid = valid.unsqueeze(-1)  # (B, *frames, 1)
    count = valid.sum(dim=dims, keepdim=True, dtype=torch.float64)  # (B, 1.., 1)
    total = torch.where(valid, features, 0.0).sum(dim=dims, keepdim=True, dtype=torch.float64)  # (B, 1.., M)
    mean = (total / count).to(torch.float32)  # (B, 1.., M)
    centred = torch.where(valid, features - mean, 0.0)  # (B, *frames, M) float32, as HF
    var = (centred * centred).sum(dim=dims, keepdim=True, dtype=torch.float64) / (count - 1.0)  # (B, 1.., M)
    std = torch.sqrt(var + variance_epsilon).to(torch.float32)  # (B, 1.., M)
    return torch.where(valid, centred / std, padding_value)


def frame_mask(frame_counts: Tensor, rows: int, stride: int = 2) -> Tensor:
    """Which frames of the :func:`frame_rows` layout are real: ``[:, k, r]`` is frame ``stride * r + k``.

    Args:
        frame_counts (Tensor): int64, shape ``(B,)``

    Returns:
        Tensor: bool, shape ``(B, stride, rows)``
    """
    row_start = torch.arange(rows, device=frame_counts.device) * stride  # (T,)
    index = torch.arange(stride, device=frame_counts.device).unsqueeze(1) + row_start  # (s, T)
    return index.unsqueeze(0) < frame_counts.view(-1, 1, 1)  # (B, s, T)


def stack_frames(features: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Concatenate the ``stride`` frames of each row; a row's mask is that of its frame 1.

    HF keeps the mask of frames with ``index % stride == 1``, so a row that ends in padding
    (the last row of a clip with an odd frame count) is masked.

    Args:
        features (Tensor): float32, shape ``(B, stride, T, M)`` (:func:`frame_rows` layout),
            invalid frames already filled
        valid (Tensor): bool, shape ``(B, stride, T)``

    Returns:
        Tuple[Tensor, Tensor]: features float32 ``(B, T, stride * M)``, mask int64 ``(B, T)``
    """
    batch, stride, rows, mels = features.shape
    stacked = features.transpose(1, 2).reshape(batch, rows, stride * mels)  # (B, T, s * M)
    return stacked, valid[:, 1].to(torch.int64)


# --------------------------------------------------------------------------- module


class TorchFeatureExtractor(torch.nn.Module):
    """``SeamlessM4TFeatureExtractor`` as a scriptable module: waveforms [B, N] -> features [B, T, 160].

    ``forward(waveform, lengths=None)`` takes right-padded float clips in [-1, 1] and the
    valid samples per clip (``None``: all ``N``).  Each clip's rows equal HF on that clip
    alone, padded the way HF pads a batch to its longest clip; this is exactly HF's batch
    output when ``N`` is the longest clip's length.  The row count comes from ``N`` alone,
    ``ceil(frames(N) / stride)``, so an input wider than its longest clip gets extra rows with
    mask 0.  Samples past a clip's length are ignored (zeroed before framing).
    """

    __jit_ignored_attributes__ = ["config"]

    def __init__(self, config: FeatureConfig | None = None, chunk_rows: int = 256):
        """``chunk_rows``: rows per FFT chunk (0: whole clips at once); values do not depend on it."""
        super().__init__()
        config = config if config is not None else FeatureConfig()
        self.config = config
        self.chunk_rows = chunk_rows
        self.frame_length = config.frame_length
        self.hop_length = config.hop_length
        self.fft_length = config.fft_length
        self.stride = config.stride
        self.preemphasis = config.preemphasis
        self.mel_floor = config.mel_floor
        self.variance_epsilon = config.variance_epsilon
        self.padding_value = config.padding_value
        self.min_num_samples = config.min_num_samples
        window = povey_window(config.frame_length)
        assert window[0].item() == 0.0, "log_mel_rows folds pre-emphasis assuming window[0] == 0"
        self.register_buffer("window", window)  # (L,) float64
        mel = kaldi_mel_filterbank(
            config.num_mel_bins, config.fft_length, config.sampling_rate, config.low_freq, config.high_freq
        )
        self.register_buffer("mel_filters", mel)  # (K, M) float64

    def forward(self, waveform: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """waveform float (B, N), lengths int (B,) or None -> features float32 (B, T, 160), mask int64 (B, T)."""
        check_waveform(waveform, self.min_num_samples)
        batch, num_samples = waveform.shape
        waveform = waveform.to(torch.float32)  # HF casts to float32 first
        if lengths is None:
            frames = num_frames(num_samples, self.frame_length, self.hop_length)
            frame_counts = torch.full([batch], frames, dtype=torch.int64, device=waveform.device)
        else:
            lengths = check_lengths(lengths, batch, num_samples, self.min_num_samples).to(waveform.device)
            frame_counts = torch.div(lengths - self.frame_length, self.hop_length, rounding_mode="floor") + 1
            sample_index = torch.arange(num_samples, device=waveform.device)  # (N,)
            waveform = torch.where(sample_index < lengths.unsqueeze(1), waveform, 0.0)  # (B, N)
        logmel = log_mel_rows(
            waveform,
            self.window,
            self.mel_filters,
            self.frame_length,
            self.hop_length,
            self.fft_length,
            self.stride,
            self.preemphasis,
            self.mel_floor,
            self.chunk_rows,
        )  # (B, s, T, M)
        valid = frame_mask(frame_counts, logmel.size(2), self.stride)  # (B, s, T)
        normed = normalize_per_mel_bin(logmel, valid, self.variance_epsilon, self.padding_value)
        return stack_frames(normed, valid)  # (B, T, s * M), (B, T)


# --------------------------------------------------------------------------- HF consumer helpers


def extractor_valid_rows(fe: Any, wave: np.ndarray) -> Tensor:
    """HF features of one mono clip at the extractor's rate, the rows whose attention mask is 1.

    The extractor stacks frames in pairs and masks a last row that is half padding (an odd frame
    count); these are the rows a model called without a mask must get.

    Args:
        fe: a ``SeamlessM4TFeatureExtractor``
        wave: float32 ``[N]`` at ``fe.sampling_rate``
    Returns:
        float32 ``[1, T_valid, 160]``
    """
    out = fe(wave, sampling_rate=fe.sampling_rate, return_tensors="pt", return_attention_mask=True)
    return out["input_features"][:, out["attention_mask"][0].bool()]


def extractor_inputs(fe: Any, waves: Sequence[np.ndarray]) -> tuple[Tensor, Tensor | None]:
    """What a preprocessed-mode model takes for 16 kHz mono ``waves``, from the HF extractor ``fe``.

    One clip: its valid rows ``[1, T, 160]`` and no mask (the seed's one-argument call; for an
    odd number of 10 ms frames the extractor's last row is half padding).  Several clips: the
    padded batch ``[B, T, 160]`` and the extractor's mask ``[B, T]``.
    """
    if len(waves) == 1:
        return extractor_valid_rows(fe, waves[0]), None
    out = fe(list(waves), sampling_rate=fe.sampling_rate, padding=True, return_attention_mask=True, return_tensors="pt")
    return out["input_features"], out["attention_mask"]


def toolkit_inputs(fe: Any, waves: Sequence[np.ndarray]) -> tuple[Tensor, Tensor, Tensor]:
    """What a toolkit-pooling preprocessed model takes for 16 kHz mono ``waves``: the extractor's
    output as it comes (every row, its int32 mask) and each clip's row count, half row included.

    Returns:
        features float32 ``[B, T, 160]``, mask int32 ``[B, T]``, clip_rows int64 ``[B]``
    """
    config = FeatureConfig.from_extractor(fe)
    out = fe(list(waves), sampling_rate=fe.sampling_rate, padding=True, return_attention_mask=True, return_tensors="pt")
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.int64)
    rows = clip_rows(lengths, len(waves), 0, config.frame_length, config.hop_length, config.stride)
    return out["input_features"], out["attention_mask"], rows


def compute_input_features_from_wave(fe: Any, wave: Any, sr: int) -> Tensor:
    """HF features of one clip, valid rows only: any wave and rate -> float32 ``(T_valid, 160)``.

    The wave is downmixed and resampled to the extractor's rate by
    :func:`w2vlab._audio.prepare_clip` (which refuses a clip shorter than two analysis frames with
    an :class:`~w2vlab._contract.AudioTooShortError`), then featurised by ``fe`` itself (the reference).
    """
    from w2vlab._audio import prepare_clip

    config = FeatureConfig.from_extractor(fe)
    mono = prepare_clip(wave, sr, config.min_num_samples, config.sampling_rate)  # (N,) float32
    return extractor_valid_rows(fe, mono)[0].to(torch.float32)  # (T_valid, 160)
