"""Why not just trace the HF extractor? A teaching reproduction of the fragile waveform export.

The seed's "experimental" waveform mode traces a wrapper that calls the HF feature extractor
inside ``forward``.  The extractor runs in numpy, so ``torch.jit.trace`` cannot see it: the
features of the *example* clip are baked into the graph as a constant, and every later input
is ignored.  :func:`naive_waveform_trace` builds that module (in memory only — w2vlab never
writes it as an artifact) and :func:`naive_trace_report` measures what it gets wrong.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from w2vlab._parity import ParityBounds, ParityReport
from w2vlab.export._suite import Case, hf_features, run_suite, synthetic_speech


class _HFExtractorInForward(nn.Module):
    """The fragile pattern: numpy feature extraction inside ``forward``."""

    def __init__(self, model: nn.Module, fe):
        super().__init__()
        self.model, self.fe = model, fe

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:  # [1, N]
        out = self.fe(
            waveform[0].numpy(), sampling_rate=self.fe.sampling_rate, return_attention_mask=True, return_tensors="pt"
        )
        return self.model(out["input_features"], out["attention_mask"])


@dataclass
class NaiveTrace:
    module: torch.jit.ScriptModule  # the traced wrapper; its features are a constant
    example_samples: int
    tracer_warnings: list[str]  # what torch said while tracing


def naive_waveform_trace(model: nn.Module, fe, example_samples: int = 32000, seed: int = 0) -> NaiveTrace:
    """Trace HF-extractor-in-forward on one example clip of ``example_samples`` samples."""
    example = torch.from_numpy(synthetic_speech(example_samples, seed))[None]  # (1, N)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            traced = torch.jit.trace(_HFExtractorInForward(model, fe).eval(), (example,), check_trace=False)
    messages = sorted(
        {str(w.message).splitlines()[0] for w in caught if issubclass(w.category, torch.jit.TracerWarning)}
    )
    return NaiveTrace(traced, example_samples, messages)


def ignores_input(naive: NaiveTrace, lengths: Sequence[int] = (16000, 48000)) -> bool:
    """True when the traced module returns the very same embedding for different clips."""
    with torch.no_grad():
        outs = [naive.module(torch.from_numpy(synthetic_speech(n, seed=i + 7))[None]) for i, n in enumerate(lengths)]
    return all(torch.equal(outs[0], o) for o in outs[1:])


def naive_trace_report(
    model: nn.Module, fe, lengths: Sequence[int] = (32000, 16000, 16160, 48000, 80000), example_samples: int = 32000
) -> tuple[NaiveTrace, ParityReport]:
    """Parity of the naive trace against HF extractor + eager model on clips of ``lengths``.

    Only a clip identical to the tracing example matches; any other clip gets the example's
    embedding back.  Lengths equal to ``example_samples`` use a *different* waveform (seed 1).
    """
    naive = naive_waveform_trace(model, fe, example_samples)
    cases = [
        Case(f"{n} samples" + (" (example length)" if n == example_samples else ""), (synthetic_speech(n, seed=1),))
        for n in lengths
    ]
    cases.insert(
        0, Case(f"{example_samples} samples (the tracing example itself)", (synthetic_speech(example_samples, 0),))
    )
    report = run_suite(
        cases,
        reference=lambda case: model(*hf_features(fe, case)),
        candidate=lambda case: naive.module(torch.from_numpy(case.waves[0])[None]),
        progress=False,
        label="naive waveform trace vs eager",
        bounds=ParityBounds(),
    )
    return naive, report
