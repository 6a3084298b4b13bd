"""The artifact's call signature, as modules: what every format is called with, in each mode.

* preprocessed, masked pooling: ``f(input_features [B, T, 160] float32, attention_mask [B, T] | None) -> [B, D]``
* preprocessed, toolkit pooling: ``f(input_features, attention_mask | None, clip_rows [B] | None) -> [B, D]``
* waveform: ``f(waveform [B, N] float32, lengths [B] int64 | None) -> [B, D]``

The mask may be any integer or bool dtype: the extractor's int32 as it comes.  Compiled cores and
``.pt2`` / ONNX programs take it as int32 (:data:`MASK_DTYPE`), the entry points cast it.
``clip_rows`` (toolkit pooling, :data:`w2vlab._contract.POOLINGS`): each clip's rows, the half row
of an odd frame count included (:func:`w2vlab._features.toolkit_inputs`); needed only in a padded
batch, since one clip's rows are all of its rows.  Waveform entries derive it from ``lengths``.

:class:`PreprocessedSpeakerEncoder`, :class:`ToolkitPreprocessedSpeakerEncoder` and
:class:`WaveformSpeakerEncoder` are scripted around the compiled core into the TorchScript archive;
the loaders of the other formats put the same entry points (or :class:`ProgramWaveformEntry`)
around a ``.pt2`` program or an ONNX Runtime session, so every format takes the same inputs and
raises the same errors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from w2vlab._contract import check_pooling
from w2vlab._features import (
    FeatureConfig,
    TorchFeatureExtractor,
    check_clip_rows,
    check_lengths,
    check_waveform,
    clip_rows,
)

# The extractor's attention_mask dtype: what compiled cores and programs take (TorchScript cannot read a
# global dtype, so the scripted entry points below spell it torch.int32).
MASK_DTYPE = torch.int32


class Core(nn.Module):
    """What gets compiled (masked pooling): (features [B, T, F], mask [B, T] int32) -> embeddings [B, D]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_features, attention_mask)


class ToolkitCore(nn.Module):
    """What gets compiled (toolkit pooling): (features [B, T, F], mask [B, T] int32, clip_rows [B] int64) -> [B, D]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self, input_features: torch.Tensor, attention_mask: torch.Tensor, clip_rows: torch.Tensor
    ) -> torch.Tensor:
        return self.model(input_features, attention_mask, clip_rows)


def core_for(model: nn.Module) -> nn.Module:
    """The compiled signature for the eager ``model``'s pooling (``model.pooling_choice``)."""
    return ToolkitCore(model) if check_pooling(model.pooling_choice) == "toolkit" else Core(model)


def checked_mask(input_features: torch.Tensor, attention_mask: torch.Tensor | None, feature_dim: int) -> torch.Tensor:
    """Check features [B, T, feature_dim] and the mask [B, T] (``None``: every row real); the mask as int32."""
    if input_features.dim() != 3 or input_features.size(2) != feature_dim:
        raise ValueError(
            f"input_features must be [batch, frames, {feature_dim}]; got shape {list(input_features.shape)}"
            f" (a single clip from the feature extractor needs .unsqueeze(0))"
        )
    if input_features.size(1) < 1:
        raise ValueError("input_features has 0 frames; the clip is too short to embed")
    if attention_mask is None:
        return torch.ones(input_features.shape[:2], dtype=torch.int32, device=input_features.device)
    if attention_mask.shape != input_features.shape[:2]:
        raise ValueError(
            f"attention_mask must be [batch, frames] = {list(input_features.shape[:2])}; "
            f"got shape {list(attention_mask.shape)}"
        )
    return attention_mask.to(torch.int32)


class PreprocessedSpeakerEncoder(nn.Module):
    """Artifact entry point, masked pooling: HF input features [B, T, 160] (+ optional mask [B, T], any
    integer or bool dtype, e.g. the extractor's int32) -> [B, D]."""

    def __init__(self, core: nn.Module, feature_dim: int):
        super().__init__()
        self.core = core
        self.feature_dim = feature_dim

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        attention_mask = checked_mask(input_features, attention_mask, self.feature_dim)
        return self.core(input_features.float(), attention_mask)


class ToolkitPreprocessedSpeakerEncoder(nn.Module):
    """Artifact entry point, toolkit pooling: the extractor's features [B, T, 160] and mask [B, T] as they
    come, + clip_rows [B] in a padded batch (each clip's rows, half row included) -> [B, D].

    Without ``clip_rows`` every row belongs to the clip: one clip's extractor output, or a batch
    without padding; a padded batch without them is refused (its half rows cannot be told from padding).
    """

    def __init__(self, core: nn.Module, feature_dim: int):
        super().__init__()
        self.core = core
        self.feature_dim = feature_dim

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        clip_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        mask = checked_mask(input_features, attention_mask, self.feature_dim)
        batch, rows = input_features.size(0), input_features.size(1)
        if clip_rows is None:
            if batch > 1 and bool((mask.sum(1) < rows).any()):
                raise ValueError(
                    "this artifact pools toolkit-style (an odd frame count's half row included) and got a batch "
                    "with masked rows but no clip_rows: a half row and a padding row look the same in the mask; "
                    "pass clip_rows [batch], each clip's rows: ceil(frames / 2), "
                    "frames = 1 + (samples - 400) // 160 (w2vlab._features.toolkit_inputs computes it)"
                )
            clip_rows = torch.full([batch], rows, dtype=torch.int64, device=input_features.device)
        clip_rows = check_clip_rows(clip_rows, mask).to(input_features.device)
        return self.core(input_features.float(), mask, clip_rows)


def preprocessed_entry(core: nn.Module, feature_dim: int, pooling: str) -> nn.Module:
    """The preprocessed entry point for ``pooling`` around ``core``."""
    if check_pooling(pooling) == "toolkit":
        return ToolkitPreprocessedSpeakerEncoder(core, feature_dim)
    return PreprocessedSpeakerEncoder(core, feature_dim)


class WaveformSpeakerEncoder(nn.Module):
    """Artifact entry point, masked pooling: waveforms [B, N] at the extractor's rate (+ lengths [B]) -> [B, D].

    ``forward`` is the frontend, then :meth:`encode`; a consumer may run the two apart (the frontend
    on its own thread count: :class:`w2vlab.runtime._artifact.Artifact`)."""

    def __init__(self, frontend: nn.Module, core: nn.Module):
        super().__init__()
        self.frontend = frontend
        self.core = core

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        input_features, attention_mask = self.frontend(waveform, lengths)
        return self.encode(input_features, attention_mask, waveform, lengths)

    @torch.jit.export
    def encode(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor,
        waveform: torch.Tensor,
        lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The frontend's output (features [B, T, 160], mask [B, T]) for ``waveform`` [B, N] -> [B, D]."""
        return self.core(input_features, attention_mask.to(torch.int32))


class ToolkitWaveformSpeakerEncoder(WaveformSpeakerEncoder):
    """Artifact entry point, toolkit pooling: waveforms [B, N] (+ lengths [B]) -> [B, D]; each clip
    pools the rows its own length gives (:func:`w2vlab._features.clip_rows`)."""

    @torch.jit.export
    def encode(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor,
        waveform: torch.Tensor,
        lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The frontend's output for ``waveform`` [B, N] (+ lengths [B]) -> [B, D], each clip's rows pooled."""
        if lengths is not None:
            lengths = lengths.to(torch.int64).to(waveform.device)
        f = self.frontend
        rows = clip_rows(lengths, waveform.size(0), waveform.size(1), f.frame_length, f.hop_length, f.stride)
        return self.core(input_features, attention_mask.to(torch.int32), rows.to(waveform.device))


def waveform_encoder(core: nn.Module, config: FeatureConfig, pooling: str = "masked") -> nn.Module:
    """``core`` behind w2vlab's torch frontend for ``config``."""
    frontend = TorchFeatureExtractor(config).eval()
    if check_pooling(pooling) == "toolkit":
        return ToolkitWaveformSpeakerEncoder(frontend, core)
    return WaveformSpeakerEncoder(frontend, core)


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


class ClipByClip(nn.Module):
    """Runs an entry point one clip at a time, each cut to its own extent: a reduced-precision file whose
    activation scales are per tensor then gives a clip the same embedding alone and in any batch.

    preprocessed: clip ``i``'s rows (its mask's ones, which must come first as the extractor's do;
    with toolkit pooling ``clip_rows[i]``) and mask; waveform: its first ``lengths[i]`` samples.
    Inputs are checked first with the entry point's own checks.  Not scriptable (a Python loop): loaders only.
    """

    def __init__(self, entry: nn.Module, mode: str, pooling: str = "masked"):
        super().__init__()
        self.entry, self.mode, self.pooling = entry, mode, check_pooling(pooling)

    def _cuts(
        self, x: torch.Tensor, second: torch.Tensor | None, rows: torch.Tensor | None
    ) -> list[tuple[torch.Tensor, ...]]:
        """Each clip's inputs, cut to its extent, after the entry point's checks."""
        batch = x.size(0)
        if self.mode == "waveform":
            check_waveform(x, self.entry.min_num_samples)
            full = torch.full((batch,), x.size(1), dtype=torch.int64)
            lengths = full if second is None else check_lengths(second, batch, x.size(1), self.entry.min_num_samples)
            return [(x[i : i + 1, : int(n)],) for i, n in enumerate(lengths)]
        mask = checked_mask(x, second, self.entry.feature_dim)
        valid = mask.sum(1)  # (B,)
        if not bool((mask == (torch.arange(mask.size(1)) < valid[:, None])).all()):
            raise ValueError("each clip's attention_mask must be ones then zeros, as the extractor returns it")
        if self.pooling == "masked":
            return [(x[i : i + 1, : int(n)],) for i, n in enumerate(valid)]
        if rows is None:  # every row real, or the entry point's error for a padded batch without clip_rows
            return (
                [(x, mask)]
                if bool((valid < x.size(1)).any())
                else [(x[i : i + 1], mask[i : i + 1]) for i in range(batch)]
            )
        counts = check_clip_rows(rows, mask)  # toolkit: the clip's rows, its half row included
        return [(x[i : i + 1, : int(n)], mask[i : i + 1, : int(n)]) for i, n in enumerate(counts)]

    def forward(
        self, x: torch.Tensor, second: torch.Tensor | None = None, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        if x.dim() < 2 or x.size(0) == 1:  # one clip (or a shape the entry point's checks refuse): as given
            return self.entry(*(t for t in (x, second, rows) if t is not None))
        return torch.cat([self.entry(*clip) for clip in self._cuts(x, second, rows)])
