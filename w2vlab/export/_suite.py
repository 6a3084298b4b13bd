"""The parity suite: clips and padded batches on which an artifact is checked against eager.

A :class:`Case` is one or more 16 kHz mono waveforms.  The reference side always goes through
the HF feature extractor and the eager model; the candidate side is whatever the artifact
takes (HF features for preprocessed mode, the raw waveform for waveform mode).

Masked pooling: single clips are run the way the seed runs them (valid feature rows only, no
mask); batches are padded by the extractor and run with its mask.  Toolkit pooling: the reference
runs every clip alone, the way WeSpeaker extracts (the extractor's output and mask as they come,
every row pooled), so a batch case checks the artifact's batch invariance against it directly;
the candidate gets the extractor's output with each clip's rows (:func:`w2vlab._features.toolkit_inputs`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from w2vlab._audio import pad_waveforms, prepare_waveform, read_audio
from w2vlab._contract import SAMPLE_RATE, SUITES, InputError, check_mode, check_pooling
from w2vlab._features import extractor_inputs, num_frames, toolkit_inputs
from w2vlab._parity import ParityBounds, ParityReport, compare

logger = logging.getLogger(__name__)

# Samples per clip: 560 (the shortest that gives one stacked frame) to 30 s.  Lengths marked
# "odd" give an odd number of 10 ms frames, so the extractor's last stacked row is half padding.
DEFAULT_LENGTHS = (
    560,
    561,
    8000,
    8160,  # 8160: odd
    12345,
    16000,
    16160,  # 16160: odd
    20000,
    24160,
    32000,
    40080,
    48000,
    64160,
    80000,
    96321,
    112000,
    128160,
    160000,
    200000,
    240160,
    320000,
    400000,
    480000,
)
QUICK_LENGTHS = (560, 8160, 16000, 16160, 40080, 160000)
DEFAULT_BATCHES = ((16160, 8000, 32037), (560, 48000), (160000, 16161, 24000, 8160))


@dataclass(frozen=True)
class Case:
    """One parity case: ``waves`` run alone (one clip) or as one padded batch."""

    name: str
    waves: tuple[np.ndarray, ...]  # each float32 [N] at 16 kHz

    @property
    def batched(self) -> bool:
        return len(self.waves) > 1


def synthetic_speech(num_samples: int, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A deterministic speech-like signal: a gliding harmonic source, syllable envelope, noise.

    Returns float32 [num_samples] in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    f0 = 110 + 40 * rng.random() + 30 * np.sin(2 * np.pi * (0.5 + rng.random()) * t)  # Hz
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * (3 + 2 * rng.random()) * t + rng.random() * 6))  # ~4 syllables/s
    wave = 0.3 * envelope * voiced + 0.01 * rng.standard_normal(num_samples)
    return (wave / max(1.0, np.abs(wave).max())).astype(np.float32)


def build_suite(
    lengths: Iterable[int] = DEFAULT_LENGTHS,
    batches: Iterable[Sequence[int]] = DEFAULT_BATCHES,
    audio: Iterable[str | Path] = (),
    seed: int = 0,
) -> list[Case]:
    """Single clips at ``lengths``, padded ``batches`` of synthetic clips, and audio files.

    Audio files are read and prepared (downmix, resample to 16 kHz) with :mod:`w2vlab._audio`;
    each is a single case, and all of them together form one more padded batch.
    """
    cases = [
        Case(f"synth_{n}" + ("_odd" if num_frames(n) % 2 else ""), (synthetic_speech(n, seed + i),))
        for i, n in enumerate(lengths)
    ]
    for j, batch in enumerate(batches):
        waves = tuple(synthetic_speech(n, seed + 1000 + 10 * j + k) for k, n in enumerate(batch))
        cases.append(Case("batch_" + "+".join(map(str, batch)), waves))
    files = sorted(Path(p) for p in audio)
    if files:
        file_waves = []
        for path in files:
            wave, sr = read_audio(path)
            file_waves.append(prepare_waveform(wave, sr, SAMPLE_RATE))
            cases.append(Case(path.stem, (file_waves[-1],)))
        if len(file_waves) > 1:
            cases.append(Case(f"batch_{len(file_waves)}_files", tuple(file_waves)))
    return cases


def named_suite(name: str, audio: Iterable[str | Path] = ()) -> list[Case]:
    """The parity suite ``name`` of :data:`w2vlab._contract.SUITES`, plus ``audio`` files.

    ``"full"``: 23 single clips from 35 ms to 30 s and 3 padded batches, 209 s of audio as run
    (padding included).  ``"quick"``: 6 single clips from 35 ms to 10 s and one padded batch of
    3 clips, 21 s as run: the same kinds of case (the shortest clip, odd frame counts, a mask)
    at a tenth of the cost per verified file, without the 12-30 s clips.
    """
    if name not in SUITES:
        raise InputError(f"unknown parity suite {name!r}; expected one of {SUITES}")
    if name == "quick":
        return build_suite(QUICK_LENGTHS, DEFAULT_BATCHES[:1], audio)
    return build_suite(audio=audio)


def without_short(cases: Sequence[Case], min_num_samples: int | None) -> list[Case]:
    """``cases`` without the clips shorter than ``min_num_samples`` (a model that needs more audio than the
    extractor, e.g. an x-vector head's TDNN context); a batch keeps its other clips.  Logs what it left out."""
    if not min_num_samples:
        return list(cases)
    kept = []
    for case in cases:
        waves = tuple(w for w in case.waves if len(w) >= min_num_samples)
        if len(waves) < len(case.waves):
            logger.info("parity suite: %s leaves out clips under %d samples", case.name, min_num_samples)
        if waves:
            kept.append(case if len(waves) == len(case.waves) else Case(f"{case.name}-short", waves))
    if not kept:
        raise InputError(f"no parity case has a clip of {min_num_samples} samples or more, the model's minimum")
    return kept


def audio_files(directory: str | Path) -> list[Path]:
    """The ``.wav``/``.flac`` files directly inside ``directory``, sorted."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"audio directory not found: {directory}")
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in (".wav", ".flac"))


def hf_features(fe, case: Case) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The HF extractor's input to the model for ``case`` (see :func:`w2vlab._features.extractor_inputs`)."""
    return extractor_inputs(fe, case.waves)


def toolkit_reference(model: torch.nn.Module, fe, case: Case) -> torch.Tensor:
    """Each clip of ``case`` alone, as WeSpeaker extracts: the extractor's features and mask as they
    come (``padding="longest"``) into the eager ``model``, every row pooled -> [len(case.waves), D]."""
    rows = []
    for wave in case.waves:
        out = fe([wave], sampling_rate=fe.sampling_rate, padding="longest", return_tensors="pt")
        rows.append(model(out["input_features"], out["attention_mask"]))
    return torch.cat(rows)


def reference_fn(model: torch.nn.Module, fe, pooling: str = "masked") -> Callable[[Case], torch.Tensor]:
    """Embed a :class:`Case` with the eager ``model`` on the HF extractor's features, as ``pooling`` runs it."""
    if check_pooling(pooling) == "toolkit":
        return lambda case: toolkit_reference(model, fe, case)
    return lambda case: model(*hf_features(fe, case))


def candidate_fn(
    mode: str, artifact: Callable[..., torch.Tensor], fe, pooling: str = "masked"
) -> Callable[[Case], torch.Tensor]:
    """Embed a :class:`Case` with an artifact (any callable with the artifact's signature for
    ``mode`` and ``pooling``), feeding it what its mode takes: HF features (+ mask, + clip rows
    for toolkit pooling), or the padded waveforms + lengths."""
    if check_mode(mode) == "waveform":
        return lambda case: artifact(*pad_waveforms(case.waves))
    if check_pooling(pooling) == "toolkit":
        return lambda case: artifact(*toolkit_inputs(fe, case.waves))
    return lambda case: artifact(*[x for x in hf_features(fe, case) if x is not None])


def embed_cases(
    cases: Sequence[Case], embed: Callable[[Case], torch.Tensor], progress: bool = True, desc: str = "embedding"
) -> tuple[list[str], torch.Tensor]:
    """Embed every case: (row names, embeddings [N, D]); each clip of a batch is a row ``case[i]``."""
    from tqdm.auto import tqdm

    names, rows = [], []
    with torch.inference_mode():
        for case in tqdm(cases, desc=desc, disable=not progress, leave=False):
            rows.append(embed(case))
            names += [f"{case.name}[{i}]" for i in range(len(case.waves))] if case.batched else [case.name]
    return names, torch.cat(rows)


def case_lengths(cases: Sequence[Case]) -> list[int]:
    """Samples of every row :func:`embed_cases` makes of ``cases``, in its order."""
    return [len(wave) for case in cases for wave in case.waves]


def embed_suite(
    cases: Sequence[Case],
    reference: Callable[[Case], torch.Tensor],
    candidate: Callable[[Case], torch.Tensor],
    progress: bool = True,
    desc: str = "parity",
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Embed every case both ways: (row names, reference [N, D], candidate [N, D])."""
    names, ref = embed_cases(cases, reference, progress, f"{desc}: reference")
    _, cand = embed_cases(cases, candidate, progress, f"{desc}: candidate")
    return names, ref, cand


def verify(
    mode: str,
    artifact: Callable[..., torch.Tensor],
    model: torch.nn.Module,
    fe,
    cases: Sequence[Case],
    bounds: ParityBounds = ParityBounds(),
    progress: bool = True,
    label: str = "",
) -> ParityReport:
    """Parity of ``artifact`` (in ``mode``) against HF extractor + eager ``model`` on ``cases``, both
    pooling as ``model`` does (``model.pooling_choice``)."""
    pooling = model.pooling_choice
    return run_suite(
        cases,
        reference_fn(model, fe, pooling),
        candidate_fn(mode, artifact, fe, pooling),
        progress=progress,
        label=f"{label or mode} vs eager",
        bounds=bounds,
    )


def run_suite(
    cases: Sequence[Case],
    reference: Callable[[Case], torch.Tensor],
    candidate: Callable[[Case], torch.Tensor],
    progress: bool = True,
    label: str = "",
    bounds: ParityBounds | None = None,
) -> ParityReport:
    """Embed every case both ways and compare them."""
    names, ref, cand = embed_suite(cases, reference, candidate, progress, label or "parity")
    return compare(
        ref, cand, names=names, bounds=bounds or ParityBounds(), label=label, num_samples=case_lengths(cases)
    )
