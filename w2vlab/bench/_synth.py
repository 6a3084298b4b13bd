"""The synthetic corpus of the corpus metrics: 16 kHz WAV files of synthetic speech and their ``wav.scp``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from w2vlab._contract import SAMPLE_RATE

SR = SAMPLE_RATE  # the model's sample rate: every clip the benchmark makes


def corpus_lengths(count: int, low: float, high: float, seed: int = 7) -> list[float]:
    """``count`` clip lengths in seconds, uniform in [low, high], rounded to 10 ms (deterministic)."""
    return np.round(np.random.default_rng(seed).uniform(low, high, count), 2).tolist()


def write_corpus(directory: Path, lengths: Sequence[float], head: int | None = None) -> Path:
    """One 16 kHz 16-bit WAV file of synthetic speech per length, and their ``wav.scp``; returns it.

    With ``head``, also ``head.scp`` listing the first ``head`` clips.
    """
    import soundfile as sf

    from w2vlab.export._suite import synthetic_speech

    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, seconds in enumerate(lengths):
        path = (directory / f"clip{i:04d}.wav").resolve()
        sf.write(str(path), synthetic_speech(int(round(seconds * SR)), seed=100 + i), SR)
        lines.append(f"clip{i:04d} {path}\n")
    if head is not None:
        (directory / "head.scp").write_text("".join(lines[:head]))
    (directory / "wav.scp").write_text("".join(lines))
    return directory / "wav.scp"
