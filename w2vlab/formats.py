"""Beyond TorchScript: ``torch.export`` programs (``.pt2``) with the artifact's call signature.

torch 2.13 deprecates every ``torch.jit`` entry point in favour of ``torch.export``.  This module
exports the same eager model as a ``.pt2`` program with dynamic batch and length, and loads it
back as a callable that takes what the TorchScript artifact of that mode takes:

* preprocessed: ``f(input_features [B, T, 160], attention_mask [B, T] | None) -> [B, D]``
* waveform: ``f(waveform [B, N], lengths [B] | None) -> [B, D]``

so :func:`w2vlab.suite.run_suite` compares it with the eager model unchanged.  Not yet wired
into ``w2vlab export`` (issue #7): call :func:`export_program` / :func:`load_program` directly.

Known limit: for the pruned demo student, ``torch.export`` cannot prove that the waveform
program's row count is never 1 (guard ``1 % (1 + (N - 400) // 320) != 0``), so waveform mode
exports only for dense models so far; preprocessed mode exports for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from .export import TRACE_FRAMES, TRACE_VALID, WaveformSpeakerEncoder, _Core
from .features import FeatureConfig, TorchFeatureExtractor

PROGRAM_FILES = {mode: f"w2vbert_speaker_exported_{mode}.pt2" for mode in ("preprocessed", "waveform")}
MAX_FRAMES = 30_000  # stacked rows (10 min of audio); the program refuses longer inputs
WAVEFORM_MIN_SAMPLES = 1040  # 3+ rows; torch.export cannot keep a dynamic row count of 1


def _example_waveforms(samples: int = 40_000) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    waves = 0.1 * torch.randn(2, samples, generator=g)
    return waves, torch.tensor([samples, samples - 12_345])


def export_program(model: nn.Module, mode: str, fe, path: str | Path) -> Path:
    """``torch.export`` the eager ``model`` for ``mode`` and save it to ``path`` (``.pt2``)."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    if mode == "preprocessed":
        feature_dim = fe.feature_size * fe.stride
        g = torch.Generator().manual_seed(0)
        example = (torch.randn(2, TRACE_FRAMES, feature_dim, generator=g), torch.ones(2, TRACE_FRAMES, dtype=torch.long))
        example[1][1, TRACE_VALID:] = 0
        frames = torch.export.Dim("frames", min=1, max=MAX_FRAMES)
        dynamic = ({0: batch, 1: frames}, {0: batch, 1: frames})
        module = _Core(model).eval()
    elif mode == "waveform":
        frontend = TorchFeatureExtractor(FeatureConfig.from_extractor(fe)).eval()
        module = WaveformSpeakerEncoder(frontend, _Core(model)).eval()
        example = _example_waveforms()
        samples = torch.export.Dim("samples", min=WAVEFORM_MIN_SAMPLES, max=MAX_FRAMES * 320)
        dynamic = ({0: batch, 1: samples}, {0: batch})
    else:
        raise ValueError(f"unknown mode {mode!r}; expected 'preprocessed' or 'waveform'")
    with torch.no_grad():
        program = torch.export.export(module, example, dynamic_shapes=dynamic)
    path = Path(path)
    torch.export.save(program, str(path))
    return path


def load_program(path: str | Path, mode: str) -> Callable[..., torch.Tensor]:
    """Load a ``.pt2`` program as a callable with the TorchScript artifact's signature."""
    module = torch.export.load(str(path)).module()

    if mode == "preprocessed":
        def run(input_features: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
            if attention_mask is None:
                attention_mask = torch.ones(input_features.shape[:2], dtype=torch.long)
            return module(input_features, attention_mask.long())
    elif mode == "waveform":
        def run(waveform: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
            if lengths is None:
                lengths = torch.full((waveform.shape[0],), waveform.shape[1], dtype=torch.long)
            if int(lengths.max()) < WAVEFORM_MIN_SAMPLES:
                raise ValueError(f"the .pt2 waveform program needs at least {WAVEFORM_MIN_SAMPLES} samples in the "
                                 f"longest clip (got {int(lengths.max())}); use the TorchScript artifact for shorter audio")
            return module(waveform, lengths)
    else:
        raise ValueError(f"unknown mode {mode!r}; expected 'preprocessed' or 'waveform'")
    return run
