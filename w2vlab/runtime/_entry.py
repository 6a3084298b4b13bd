"""The artifact's call signature, as modules: what every format is called with, in each mode.

* preprocessed: ``f(input_features [B, T, 160] float32, attention_mask [B, T] | None) -> [B, D]``
* waveform: ``f(waveform [B, N] float32, lengths [B] int64 | None) -> [B, D]``

:class:`PreprocessedSpeakerEncoder` and :class:`WaveformSpeakerEncoder` are scripted around the
compiled core into the TorchScript archive; the loaders of the other formats put the same
entry points (or :class:`ProgramWaveformEntry`) around a ``.pt2`` program or an ONNX Runtime
session, so every format takes the same inputs and raises the same errors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from w2vlab._features import FeatureConfig, TorchFeatureExtractor, check_lengths, check_waveform


class Core(nn.Module):
    """What gets compiled: (features [B, T, F], mask [B, T]) -> embeddings [B, D], mask required."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_features, attention_mask)


class PreprocessedSpeakerEncoder(nn.Module):
    """Artifact entry point: HF input features [B, T, 160] (+ optional mask [B, T], any integer
    or bool dtype, e.g. the extractor's int32) -> [B, D]."""

    def __init__(self, core: nn.Module, feature_dim: int):
        super().__init__()
        self.core = core
        self.feature_dim = feature_dim

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if input_features.dim() != 3 or input_features.size(2) != self.feature_dim:
            raise ValueError(
                f"input_features must be [batch, frames, {self.feature_dim}]; got shape {list(input_features.shape)}"
                f" (a single clip from the feature extractor needs .unsqueeze(0))"
            )
        if input_features.size(1) < 1:
            raise ValueError("input_features has 0 frames; the clip is too short to embed")
        if attention_mask is None:
            attention_mask = torch.ones(input_features.shape[:2], dtype=torch.long, device=input_features.device)
        elif attention_mask.shape != input_features.shape[:2]:
            raise ValueError(
                f"attention_mask must be [batch, frames] = {list(input_features.shape[:2])}; "
                f"got shape {list(attention_mask.shape)}"
            )
        return self.core(input_features.float(), attention_mask.long())


class WaveformSpeakerEncoder(nn.Module):
    """Artifact entry point: waveforms [B, N] at the extractor's rate (+ lengths [B]) -> [B, D]."""

    def __init__(self, frontend: nn.Module, core: nn.Module):
        super().__init__()
        self.frontend = frontend
        self.core = core

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        input_features, attention_mask = self.frontend(waveform, lengths)
        return self.core(input_features, attention_mask)


def waveform_encoder(core: nn.Module, config: FeatureConfig) -> WaveformSpeakerEncoder:
    """``core`` behind w2vlab's torch frontend for ``config``."""
    return WaveformSpeakerEncoder(TorchFeatureExtractor(config).eval(), core)


def min_program_samples(config: FeatureConfig) -> int:
    """Shortest waveform a waveform program runs as is: two feature rows (720 samples at 16 kHz).

    ``torch.export`` specialises a dynamic size of 1, so programs are captured for >= 2 rows."""
    return config.frame_length + config.stride * config.hop_length


class ProgramWaveformEntry(nn.Module):
    """Waveform-mode entry point around a ``.pt2`` or ONNX program: the TorchScript artifact's
    checks, then ``lengths`` filled and short clips right-padded to :func:`min_program_samples`
    (the padding lies past ``lengths``, so it is ignored)."""

    def __init__(self, core: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], config: FeatureConfig):
        super().__init__()
        self.core = core
        self.min_num_samples = config.min_num_samples  # 560: two analysis frames
        self.min_program_samples = min_program_samples(config)  # 720: two feature rows

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        check_waveform(waveform, self.min_num_samples)
        batch, num_samples = waveform.shape
        if lengths is None:
            lengths = torch.full((batch,), num_samples, dtype=torch.long, device=waveform.device)
        else:
            lengths = check_lengths(lengths, batch, num_samples, self.min_num_samples).to(waveform.device)
        waveform = waveform.to(torch.float32)  # a program asserts dtype and device of both inputs
        if num_samples < self.min_program_samples:
            waveform = nn.functional.pad(waveform, [0, self.min_program_samples - num_samples])  # (B, 720)
        return self.core(waveform, lengths)
