"""Reduced precision gated on decisions: what an int8 copy does to verification decisions, and the
blocks kept fp32 until it does no harm.

Parity bounds judge each embedding; a user judges the artifact by its accept/reject decisions.  With
an evaluation set (``trials.txt`` + ``wav.scp``, e.g. the trained demo's ``tests/data/voices_eval``),
the exporter embeds every clip with the eager model and with the reloaded int8 copy, scores the
trials both ways as :func:`w2vlab.corpus._trials.compare_embeddings` does, and checks the
:class:`DecisionGate`: the decisions flipped at the reference's EER and minDCF thresholds, and the
EER's move.  A copy that misses it is re-quantised with the most sensitive blocks kept fp32
(:func:`rank_blocks`, then one block more per step) until it passes; every step's flips, ΔEER and
time in the program are recorded in the artifact's metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2vlab._audio import prepare_waveform
from w2vlab._contract import EVAL_FILES, InputError
from w2vlab._parity import cosine_rows
from w2vlab.corpus._embed import read_clip, read_source
from w2vlab.corpus._trials import Trials, compare_embeddings, read_trials
from w2vlab.export._suite import Case, embed_cases

logger = logging.getLogger(__name__)

RANK_CLIPS = 32  # clips of the evaluation set each block's sensitivity is measured on


@dataclass(frozen=True)
class DecisionGate:
    """What a labelled reduced-precision copy may do to the evaluation trials' decisions.

    ``max_flip_percent``: flipped decisions at any one operating point (the reference's EER threshold,
    and its minDCF threshold at each p_target), in % of the trials.  ``max_eer_change_points``:
    ``|EER(copy) - EER(eager)|`` in percentage points.  ``max_kept_blocks``: how many blocks the
    search may keep fp32 before the copy is refused (``None``: all but one)."""

    max_flip_percent: float = 0.1
    max_eer_change_points: float = 0.1
    max_kept_blocks: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_flip_percent", "max_eer_change_points"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and np.isfinite(value) and value >= 0):
                raise InputError(f"DecisionGate.{name} is {value!r}; expected a finite number >= 0")
        if self.max_kept_blocks is not None and not (
            isinstance(self.max_kept_blocks, int) and self.max_kept_blocks >= 0
        ):
            raise InputError(f"DecisionGate.max_kept_blocks is {self.max_kept_blocks!r}; expected an integer >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def judge(self, effect: Mapping[str, Any]) -> bool:
        """Whether a :func:`decision_effect` summary is within the gate."""
        return (
            effect["max_flip_percent"] <= self.max_flip_percent
            and abs(effect["eer_change_points"]) <= self.max_eer_change_points
        )


@dataclass(frozen=True)
class EvalSet:
    """An evaluation set: its trials, one :class:`Case` per clip its trials name, and a digest of both."""

    directory: Path
    trials: Trials
    cases: tuple[Case, ...]
    sha256: str  # of trials.txt and wav.scp as read, so a card names the set it was judged on

    @classmethod
    def read(cls, directory: str | Path) -> EvalSet:
        """Read ``directory``'s ``trials.txt`` and the clips its ``wav.scp`` lists (16 kHz mono float32).

        Raises :class:`InputError` when a file is missing, a trial names a clip ``wav.scp`` lacks, or the
        trials lack targets or non-targets; all before any model is loaded."""
        directory = Path(directory)
        missing = [name for name in EVAL_FILES if not (directory / name).is_file()]
        if missing:
            raise InputError(
                f"evaluation set {directory}: no {' or '.join(missing)}; expected a directory with "
                f"{' and '.join(EVAL_FILES)} (the trials and their clips), e.g. tests/data/voices_eval"
            )
        trials = read_trials(directory / "trials.txt")
        if not trials.n_target or not trials.n_nontarget:
            raise InputError(
                f"{directory / 'trials.txt'} has {trials.n_target} target and {trials.n_nontarget} non-target "
                "trials; expected both, or no EER can be measured"
            )
        items = {item.key: item for item in read_source(directory / "wav.scp")}
        absent = sorted(set(trials.keys) - set(items))
        if absent:
            raise InputError(
                f"{directory / 'trials.txt'} names {len(absent)} clip(s) {directory / 'wav.scp'} lacks, e.g. "
                f"{absent[:3]}; expected every trial's clips listed"
            )
        cases = tuple(Case(key, (prepare_waveform(*read_clip(items[key])),)) for key in trials.keys)
        digest = hashlib.sha256(b"".join((directory / n).read_bytes() for n in EVAL_FILES)).hexdigest()
        return cls(directory, trials, cases, digest)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.directory.name,
            "sha256": self.sha256,
            "clips": len(self.cases),
            "trials": len(self.trials),
            "targets": self.trials.n_target,
        }


class TimedProgram:
    """A program (an artifact's callable) that adds up the seconds spent inside its calls."""

    def __init__(self, program: Callable[..., torch.Tensor]):
        self.program, self.seconds = program, 0.0

    def __call__(self, *args: Any) -> torch.Tensor:
        start = time.perf_counter()
        out = self.program(*args)
        self.seconds += time.perf_counter() - start
        return out


def embed_set(
    cases: Sequence[Case], embed: Callable[[Case], torch.Tensor], progress: bool, desc: str
) -> dict[str, np.ndarray]:
    """key -> embedding ``[D]`` of every clip (one :class:`Case` each)."""
    names, rows = embed_cases(cases, embed, progress, desc)
    return dict(zip(names, rows.float().numpy()))


def decision_effect(
    reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], trials: Trials
) -> dict[str, Any]:
    """The candidate's decisions against the reference's on ``trials``: per operating point its metric on both
    sides and the flipped decisions (count and % of the trials), the worst point's %, and the EER's move."""
    comparison = compare_embeddings(reference, candidate, trials, label="eager vs int8")
    n = len(trials)
    points = [
        {
            "name": p.name,
            "reference": p.reference,
            "candidate": p.candidate,
            "difference": p.difference,
            "flips": p.n_flips,
            "flip_percent": 100.0 * p.n_flips / n,
        }
        for p in comparison.points
    ]
    eer = comparison.points[0]
    return {
        "trials": n,
        "points": points,
        "max_flip_percent": max(p["flip_percent"] for p in points),
        "eer_points": 100.0 * eer.reference,
        "eer_change_points": 100.0 * eer.difference,
        "max_abs_score_diff": comparison.max_abs_diff,
    }


def rank_blocks(
    blocks: Sequence[str],
    measure: Callable[[Sequence[str]], dict[str, np.ndarray]],
    reference: Mapping[str, np.ndarray],
) -> list[tuple[str, float]]:
    """``blocks`` from the most sensitive down, each with its sensitivity: the mean ``1 - cosine`` to the
    reference when it is the only block quantised.  ``measure(kept)`` embeds the ranking clips with every
    block in ``kept`` left fp32."""
    scores = []
    for block in blocks:
        embeddings = measure([b for b in blocks if b != block])
        keys = list(embeddings)
        ref = np.stack([reference[k] for k in keys]).astype(np.float64)  # [N, D]
        cos = cosine_rows(ref, np.stack([embeddings[k] for k in keys]).astype(np.float64))
        scores.append((block, float(np.mean(1.0 - cos))))
        logger.info("block %s alone in int8: mean 1 - cosine %.3e", block, scores[-1][1])
    return sorted(scores, key=lambda s: -s[1])


def effect_text(effect: Mapping[str, Any]) -> str:
    """Flips per point and the EER's move of a :func:`decision_effect` (or a metadata entry holding one)."""
    flips = ", ".join(f"{p['flips']} at {p['name']} ({p['flip_percent']:.3f}%)" for p in effect["points"])
    return f"flipped {flips}; EER {effect['eer_points']:.3f}% {effect['eer_change_points']:+.3f} points"


def effect_line(effect: Mapping[str, Any]) -> str:
    """One line for a log or the command line: the trials, then :func:`effect_text`."""
    return f"{effect['trials']} trials: {effect_text(effect)}"


@dataclass(frozen=True)
class Step:
    """One recipe the search measured: the blocks it kept fp32 beyond the base recipe, and what it did."""

    added: list[str]
    effect: dict[str, Any]
    program_seconds: float  # inside the int8 program, over the whole evaluation set
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "kept_fp32_added": self.added,
            "passed": self.passed,
            "program_seconds": self.program_seconds,
            "max_flip_percent": self.effect["max_flip_percent"],
            "eer_change_points": self.effect["eer_change_points"],
            "flips": {p["name"]: p["flips"] for p in self.effect["points"]},
        }


def search(
    gate: DecisionGate,
    blocks: Sequence[str],
    measure: Callable[[Sequence[str]], tuple[dict[str, Any], float]],
    rank: Callable[[Sequence[str]], dict[str, np.ndarray]],
    reference: Mapping[str, np.ndarray],
) -> tuple[list[Step], list[tuple[str, float]]]:
    """Measure the base recipe, and while it misses ``gate`` keep one more of ``blocks`` fp32, the most
    sensitive first (:func:`rank_blocks`); stops at the first recipe that passes, or when the gate's
    ``max_kept_blocks`` (at most all blocks but one: a copy with nothing in int8 is not an int8 copy) are kept.

    ``measure(added)`` builds the copy with ``added`` kept fp32 beyond the base recipe and returns its
    :func:`decision_effect` on the whole set and its program seconds; ``rank(added)`` embeds the ranking
    clips.  Returns the steps (the last one is the recipe to keep, or to refuse) and the ranking."""
    effect, seconds = measure([])
    steps = [Step([], effect, seconds, gate.judge(effect))]
    logger.info("int8 as built: %s", effect_line(effect))
    limit = len(blocks) - 1 if gate.max_kept_blocks is None else min(gate.max_kept_blocks, len(blocks) - 1)
    if steps[-1].passed or limit <= 0:
        return steps, []
    logger.info("int8 misses the decision gate %s; ranking %d blocks", gate.to_dict(), len(blocks))
    ranked = rank_blocks(blocks, rank, reference)
    for k in range(1, limit + 1):
        added = [block for block, _ in ranked[:k]]
        effect, seconds = measure(added)
        steps.append(Step(added, effect, seconds, gate.judge(effect)))
        logger.info("int8 with %d block(s) kept fp32: %s", k, effect_line(effect))
        if steps[-1].passed:
            break
    return steps, ranked


def rank_cases(cases: Sequence[Case], n: int = RANK_CLIPS) -> list[Case]:
    """``n`` clips spread evenly over ``cases`` (the whole set when it is smaller)."""
    picks = np.linspace(0, len(cases) - 1, num=min(n, len(cases))).round().astype(int)
    return [cases[i] for i in dict.fromkeys(picks.tolist())]


def gated_entry(
    evalset: EvalSet, gate: DecisionGate, steps: Sequence[Step], ranked: Sequence[tuple[str, float]]
) -> dict[str, Any]:
    """What an int8 file's metadata says of its decisions: the set, the gate, the kept recipe's effect, each
    step of the search with its time relative to the first, and the blocks' ranking."""
    base = steps[0].program_seconds
    return {
        "gated": True,
        "passed": steps[-1].passed,
        "reference": "the eager model on the HF extractor's features",
        "eval_set": evalset.describe(),
        "gate": gate.to_dict(),
        **steps[-1].effect,
        "program_seconds": steps[-1].program_seconds,
        "steps": [{**s.to_dict(), "time_vs_first": s.program_seconds / base if base > 0 else None} for s in steps],
        "ranking": [{"block": block, "mean_1_minus_cosine": value} for block, value in ranked],
    }


NOT_GATED = {
    "gated": False,
    "why": "no evaluation set was given (export(eval_trials=DIR), w2vlab export --eval-trials DIR): "
    "the copy's decisions were not measured",
}
