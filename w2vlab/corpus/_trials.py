"""Trial scoring and decision-level parity: does the export accept and reject the same trials?

Embedding parity (:mod:`w2vlab._parity`) says how close two embeddings are; a speaker system is
judged by its decisions.  This module reads a trial list (VoxCeleb ``1 enroll test`` or
WeSpeaker ``enroll test target``), scores it by cosine from a Kaldi ``embeddings.scp``, computes
EER and minDCF as NIST SRE / WeSpeaker define them, and compares two sets of scores trial by
trial: which decisions flip at the reference's operating points.

Decision rule everywhere: a trial is accepted (called a target) iff ``score >= threshold``.
The operating points are every distinct score as threshold plus one above the highest score
(accept nothing), so tied scores are one point, never split as if they were separable.

Consumer side: numpy, kaldiio (imported by :func:`load_embeddings`) and :mod:`w2vlab._parity`
(its ``cosine_rows`` is the one cosine of w2vlab); nothing of the exporter or the model.
"""

from __future__ import annotations

import dataclasses
import io
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from w2vlab._contract import CORPUS_SCP, InputError
from w2vlab._parity import cosine_rows

EMBEDDINGS_SCP = CORPUS_SCP  # inside a `w2vlab embed-corpus` output directory
P_TARGETS = (0.01, 0.005)  # minDCF operating points reported by default (VoxCeleb / WeSpeaker)
TRIAL_FORMATS = {  # name -> the line it expects
    "voxceleb": "`<1|0> <enroll> <test>`",
    "wespeaker": "`<enroll> <test> <target|nontarget>`",
}
_SHOW = 10  # how many keys or lines an error message lists
_CHUNK = 65536  # trials scored per cosine_rows call (bounds memory on million-trial lists)


# --------------------------------------------------------------------------- trial lists


@dataclass(frozen=True, eq=False)
class Trials:
    """A trial list: N (enroll, test) key pairs with their labels."""

    enroll: tuple[str, ...]  # [N] enrollment keys
    test: tuple[str, ...]  # [N] test keys
    labels: np.ndarray  # [N] int64: 1 target (same speaker), 0 non-target
    format: str = "voxceleb"  # the file format it was read from, a key of TRIAL_FORMATS
    source: str = ""  # the file it was read from

    def __post_init__(self) -> None:
        labels = np.array(self.labels, dtype=np.int64).reshape(-1)
        if not len(self.enroll) == len(self.test) == len(labels):
            raise InputError(
                f"received {len(self.enroll)} enroll keys, {len(self.test)} test keys and "
                f"{len(labels)} labels; expected one of each per trial"
            )
        if not np.isin(labels, (0, 1)).all():
            raise InputError(f"labels must be 1 (target) or 0 (non-target); received {sorted(set(labels.tolist()))}")
        if self.format not in TRIAL_FORMATS:
            raise InputError(f"unknown trial format {self.format!r}; expected one of {list(TRIAL_FORMATS)}")
        labels.setflags(write=False)
        object.__setattr__(self, "enroll", tuple(self.enroll))
        object.__setattr__(self, "test", tuple(self.test))
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key the trials name, sorted, each once."""
        return tuple(sorted(set(self.enroll) | set(self.test)))

    @property
    def n_target(self) -> int:
        return int(self.labels.sum())

    @property
    def n_nontarget(self) -> int:
        return len(self) - self.n_target

    def subset(self, keep: np.ndarray) -> Trials:
        """The trials where the boolean [N] mask ``keep`` is true, in their order."""
        idx = np.flatnonzero(keep)
        return Trials(
            tuple(self.enroll[i] for i in idx),
            tuple(self.test[i] for i in idx),
            self.labels[idx],
            self.format,
            self.source,
        )


def _line_formats(fields: Sequence[str]) -> set[str]:
    """The formats a line split into ``fields`` fits (both, for e.g. ``1 a target``)."""
    fits = set()
    if len(fields) == 3 and fields[0] in ("0", "1"):
        fits.add("voxceleb")
    if len(fields) == 3 and fields[2] in ("target", "nontarget"):
        fits.add("wespeaker")
    return fits


def read_trials(path: str | Path) -> Trials:
    """Read a trial list in VoxCeleb or WeSpeaker format (see :data:`TRIAL_FORMATS`).

    The format is that of the first line that fits only one (VoxCeleb if every line fits
    both); blank lines are skipped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds no trials, or a line is malformed or in the other format
            (the message names the file, the line number and its text).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trials file not found: {path}")
    lines = [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    expected = " or ".join(f"{name} {pattern}" for name, pattern in TRIAL_FORMATS.items())
    if not lines:
        raise InputError(f"{path} holds no trials; expected lines in {expected} format")
    fits = [_line_formats(line.split()) for _, line in lines]
    for (n, line), fit in zip(lines, fits):
        if not fit:
            raise InputError(f"{path}, line {n}: {line!r} is not a trial; expected {expected}")
    first = next(
        ((n, line, f) for (n, line), f in zip(lines, fits) if len(f) == 1), (lines[0][0], lines[0][1], {"voxceleb"})
    )
    fmt = next(iter(first[2]))
    for (n, line), fit in zip(lines, fits):
        if fmt not in fit:
            raise InputError(
                f"{path}, line {n}: {line!r} is a {next(iter(fit))} trial, but the file is {fmt} "
                f"(from line {first[0]}: {first[1]!r}); expected {TRIAL_FORMATS[fmt]} on every line"
            )
    rows = [line.split() for _, line in lines]
    if fmt == "voxceleb":
        return Trials(tuple(r[1] for r in rows), tuple(r[2] for r in rows), [int(r[0]) for r in rows], fmt, str(path))
    return Trials(
        tuple(r[0] for r in rows), tuple(r[1] for r in rows), [int(r[2] == "target") for r in rows], fmt, str(path)
    )


# --------------------------------------------------------------------------- embeddings


_SCP_VALUE = re.compile(r"(?P<file>.+?)(?P<tail>:\d+(?:\[[^\]]*\])?)?")  # path[:offset][[slices]]


def _scp_entries(scp: Path) -> list[tuple[str, str]]:
    """(key, ark location) of each line of ``scp``; a relative ark path is resolved against the
    scp's folder when the file is there, else left to the working directory (Kaldi's habit)."""
    entries, seen = [], set()
    for n, line in enumerate(scp.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(None, 1)
        if len(fields) != 2:
            raise InputError(f"{scp}, line {n}: {line!r}; expected `<key> <file.ark>:<offset>`")
        key, value = fields[0], fields[1].strip()
        if value.startswith("|") or value.endswith("|"):
            raise InputError(
                f"{scp}, line {n}: {line!r} is a shell command; w2vlab reads embeddings from "
                "ark files only and never runs commands named in an scp"
            )
        if key in seen:
            raise InputError(f"{scp}, line {n}: key {key!r} occurs more than once; expected unique keys")
        seen.add(key)
        m = _SCP_VALUE.fullmatch(value)
        ark = Path(m["file"])
        if not ark.is_absolute() and (scp.parent / ark).is_file():
            ark = scp.parent / ark
        if not ark.is_file():
            raise FileNotFoundError(
                f"{scp}, line {n}: ark file {m['file']} not found (looked beside the scp and in the working directory)"
            )
        entries.append((key, f"{ark}{m['tail'] or ''}"))
    return entries


def load_embeddings(source: str | Path) -> dict[str, np.ndarray]:
    """Key -> [D] embedding, from an ``embed-corpus`` output directory or a Kaldi ``.scp`` file.

    Args:
        source: a directory holding :data:`EMBEDDINGS_SCP`, or the path of an scp file whose
            lines are ``<key> <file.ark>:<offset>`` (read with ``kaldiio.load_scp``).

    Raises:
        FileNotFoundError: no such directory or file, or an ark file the scp names is missing.
        ValueError: an scp line is malformed, repeats a key or is a shell command (``... |``),
            or an embedding cannot be read.
    """
    source = Path(source)
    scp = source / EMBEDDINGS_SCP if source.is_dir() else source
    if not scp.is_file():
        where = f"{source} has no {EMBEDDINGS_SCP}" if source.is_dir() else f"embeddings not found: {source}"
        raise FileNotFoundError(f"{where}; expected a `w2vlab embed-corpus` output directory or a Kaldi .scp file")
    try:
        import kaldiio
    except ImportError as e:
        raise ImportError("reading Kaldi embeddings needs kaldiio; run: pip install 'kaldiio>=2.18'") from e
    entries = _scp_entries(scp)
    if not entries:
        raise InputError(f"{scp} lists no embeddings; expected lines `<key> <file.ark>:<offset>`")
    loader = kaldiio.load_scp(io.StringIO("".join(f"{key} {value}\n" for key, value in entries)))
    out = {}
    for key, value in entries:
        try:
            with warnings.catch_warnings():  # kaldiio warns before re-raising; the error below says it all
                warnings.simplefilter("ignore")
                out[key] = np.asarray(loader[key])
        except (OSError, ValueError, EOFError, RuntimeError, IndexError) as e:
            raise InputError(f"{scp}: cannot read the embedding of {key!r} from {value}: {e}") from e
    try:  # kaldiio reads a truncated ark as a shorter vector: one size for all catches it
        _embedding_matrix(out, list(out))
    except ValueError as e:
        raise InputError(f"{scp}: {e} (a truncated or mixed-up ark?)") from e
    return out


def _embedding_matrix(embeddings: Mapping[str, Any], keys: Sequence[str]) -> np.ndarray:
    """The embeddings of ``keys`` as a finite float64 [K, D] matrix (a [1, D] entry counts as [D])."""
    rows = []
    for key in keys:
        v = np.asarray(embeddings[key], dtype=np.float64)
        v = v[0] if v.ndim == 2 and v.shape[0] == 1 else v
        if v.ndim != 1 or v.size == 0:
            raise InputError(f"the embedding of {key!r} has shape {np.shape(embeddings[key])}; expected a [D] vector")
        if rows and v.shape != rows[0].shape:
            raise InputError(
                f"the embedding of {key!r} has {v.size} values but that of {keys[0]!r} has "
                f"{rows[0].size}; expected one dimension for all"
            )
        rows.append(v)
    matrix = np.stack(rows)  # (K, D)
    bad = [keys[i] for i in np.flatnonzero(~np.isfinite(matrix).all(axis=1))]
    if bad:
        raise InputError(
            f"{len(bad)} embeddings hold NaN/Inf ({', '.join(bad[:_SHOW])}); a non-finite embedding cannot be scored"
        )
    return matrix


# --------------------------------------------------------------------------- metrics


def _scores_labels(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise InputError(f"received {s.size} scores and {y.size} labels; expected one label per score")
    if not np.isin(y, (0, 1)).all():
        raise InputError(f"labels must be 1 (target) or 0 (non-target); received {sorted(set(y.tolist()))[:_SHOW]}")
    if not np.isfinite(s).all():
        raise InputError(f"{int((~np.isfinite(s)).sum())} scores are NaN/Inf; expected finite scores")
    y = y.astype(np.int64)
    if y.sum() == 0 or y.sum() == y.size:
        raise InputError(
            f"received {int(y.sum())} target and {int(y.size - y.sum())} non-target trials; "
            "EER and minDCF need at least one of each"
        )
    return s, y


def det_curve(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every operating point of the rule "accept iff score >= threshold".

    Args:
        scores: [N] trial scores.
        labels: [N] 1 (target) / 0 (non-target); both must occur.

    Returns:
        ``(fpr, fnr, thresholds)``, each [K] with K = distinct scores + 1, thresholds ascending:
        each distinct score, then the next float above the highest (accepts nothing).  ``fpr``
        (false-accept rate) falls from 1 to 0, ``fnr`` (miss rate) rises from 0 to 1.
    """
    s, y = _scores_labels(scores, labels)
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    distinct, first = np.unique(s, return_index=True)  # first: index of each distinct score in s
    targets_before = np.concatenate([[0], np.cumsum(y)])  # (N + 1,): targets among the i lowest
    cut = np.append(first, s.size)  # (K,): trials below each threshold
    n_target, n_nontarget = int(y.sum()), int(y.size - y.sum())
    fnr = targets_before[cut] / n_target
    fpr = 1.0 - (cut - targets_before[cut]) / n_nontarget  # this form: bit-identical to WeSpeaker's sweep
    thresholds = np.append(distinct, np.nextafter(distinct[-1], np.inf))
    return fpr, fnr, thresholds


def eer(scores: Any, labels: Any) -> tuple[float, float]:
    """Equal error rate, as NIST SRE's scoring (and WeSpeaker) computes it.

    The DET points around the crossing are joined by a straight line; the EER is where it
    meets ``fnr == fpr``.  The threshold is that of the first point with ``fnr >= fpr``.

    Returns:
        ``(eer, threshold)``: EER as a fraction in [0, 1], threshold for "accept iff score >= it".
    """
    fpr, fnr, thresholds = det_curve(scores, labels)
    x1 = int(np.flatnonzero(fnr >= fpr)[0])  # >= 1: the first point accepts all (fnr 0, fpr 1)
    x2 = x1 - 1
    # how far from point x1 (fnr - fpr >= 0) back towards x2 (< 0) the crossing lies; the same
    # arithmetic, operation for operation, as NIST's / WeSpeaker's, so that untied scores give their bits
    a = (fnr[x1] - fpr[x1]) / (fpr[x2] - fpr[x1] - (fnr[x2] - fnr[x1]))
    return float(fnr[x1] + a * (fnr[x2] - fnr[x1])), float(thresholds[x1])


def min_dcf(scores: Any, labels: Any, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """Minimum normalised detection cost (NIST SRE, WeSpeaker's ``minDCF``).

    ``DCF(t) = c_miss * p_target * fnr(t) + c_fa * (1 - p_target) * fpr(t)``, minimised over
    every operating point and divided by ``min(c_miss * p_target, c_fa * (1 - p_target))``, the
    cost of the better trivial system (accept all or reject all).

    Returns:
        ``(min_dcf, threshold)``: the lowest threshold reaching the minimum.
    """
    if not 0.0 < p_target < 1.0:
        raise InputError(f"p_target={p_target}; expected a prior strictly between 0 and 1")
    if not (c_miss > 0 and c_fa > 0):
        raise InputError(f"c_miss={c_miss}, c_fa={c_fa}; expected positive costs")
    fpr, fnr, thresholds = det_curve(scores, labels)
    cost = c_miss * fnr * p_target + c_fa * fpr * (1.0 - p_target)  # (K,), WeSpeaker's order of operations
    best = int(np.argmin(cost))
    return float(cost[best] / min(c_miss * p_target, c_fa * (1.0 - p_target))), float(thresholds[best])


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True, eq=False)
class TrialScores:
    """Scores of a trial list: cosine, or normalised (:mod:`w2vlab.corpus._norm`)."""

    trials: Trials  # the trials scored (those skipped for a missing key left out)
    scores: np.ndarray  # [N] float64 score of each trial (a plain cosine is in [-1, 1])
    skipped: int = 0  # trials dropped because a key has no embedding (skip_missing=True)
    missing_keys: tuple[str, ...] = ()  # the keys that had no embedding, sorted
    scoring: str = "cosine"  # how the scores were made, e.g. "cosine, mean-subtracted, AS-Norm top-300"

    def __post_init__(self) -> None:
        scores = np.array(self.scores, dtype=np.float64).reshape(-1)
        if scores.size != len(self.trials):
            raise InputError(f"received {scores.size} scores for {len(self.trials)} trials; expected one per trial")
        scores.setflags(write=False)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return len(self.trials)

    def eer(self) -> tuple[float, float]:
        """``(eer, threshold)``, see :func:`eer`."""
        return eer(self.scores, self.trials.labels)

    def min_dcf(self, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
        """``(min_dcf, threshold)``, see :func:`min_dcf`."""
        return min_dcf(self.scores, self.trials.labels, p_target, c_miss, c_fa)

    def metrics(self, p_targets: Sequence[float] = P_TARGETS) -> dict[str, Any]:
        """Trial counts, EER and minDCF at each prior, as JSON-ready plain values."""
        value, threshold = self.eer()
        return {
            "scoring": self.scoring,
            "n_trials": len(self),
            "n_target": self.trials.n_target,
            "n_nontarget": self.trials.n_nontarget,
            "skipped": self.skipped,
            "missing_keys": list(self.missing_keys),
            "eer": value,
            "eer_threshold": threshold,
            "min_dcf": [dict(zip(("p_target", "min_dcf", "threshold"), (p, *self.min_dcf(p)))) for p in p_targets],
        }

    def to_markdown(self, p_targets: Sequence[float] = P_TARGETS) -> str:
        """Counts, then one table row per metric: value and threshold."""
        m = self.metrics(p_targets)
        skipped = (
            f", {m['skipped']} skipped ({len(self.missing_keys)} keys without an embedding)" if self.skipped else ""
        )
        lines = [
            f"{m['n_trials']} trials ({m['n_target']} target, {m['n_nontarget']} non-target){skipped}; "
            f"scoring: {self.scoring}",
            "",
            "| metric | value | threshold |",
            "|---|---:|---:|",
            f"| EER | {100 * m['eer']:.3f}% | {m['eer_threshold']:.6f} |",
        ]
        lines += [
            f"| minDCF (p_target={d['p_target']}) | {d['min_dcf']:.4f} | {d['threshold']:.6f} |" for d in m["min_dcf"]
        ]
        return "\n".join(lines)

    def write(self, path: str | Path) -> Path:
        """Write ``<enroll> <test> <score> <target|nontarget>`` lines (WeSpeaker's score file, which its
        ``compute_metrics.py`` reads), atomically.  Each score is written in the fewest digits that read
        back as the same float64, so metrics computed from the file are those of :attr:`scores`."""
        path = Path(path)
        t = self.trials
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(
            "".join(
                f"{e} {x} {float(s)!r} {'target' if y else 'nontarget'}\n"
                for e, x, s, y in zip(t.enroll, t.test, self.scores, t.labels)
            )
        )
        tmp.replace(path)
        return path


def score_trials(embeddings: Mapping[str, Any], trials: Trials, skip_missing: bool = False) -> TrialScores:
    """Cosine score of each trial (:func:`w2vlab._parity.cosine_rows`).

    Args:
        embeddings: key -> [D] embedding (e.g. from :func:`load_embeddings`).
        trials: the trial list (from :func:`read_trials`).
        skip_missing: drop the trials whose enroll or test key has no embedding, and count
            them in ``skipped``, instead of raising.

    Raises:
        ValueError: keys without an embedding (listed, first 10, and counted) and
            ``skip_missing`` is false; no trial left; embeddings of different sizes or NaN/Inf.
    """
    missing = tuple(k for k in trials.keys if k not in embeddings)
    keep = np.array([e in embeddings and x in embeddings for e, x in zip(trials.enroll, trials.test)], dtype=bool)
    if missing and not skip_missing:
        more = f" and {len(missing) - _SHOW} more" if len(missing) > _SHOW else ""
        raise InputError(
            f"{len(missing)} of {len(trials.keys)} trial keys have no embedding "
            f"({', '.join(missing[:_SHOW])}{more}), needed by {int((~keep).sum())} of {len(trials)} "
            "trials; embed them, or skip those trials (skip_missing=True, --skip-missing)"
        )
    kept = trials.subset(keep) if missing else trials
    if not len(kept):
        raise InputError(f"none of the {len(trials)} trials has embeddings for both keys; nothing to score")
    keys = kept.keys
    matrix = _embedding_matrix(embeddings, keys)  # (K, D)
    index = {key: i for i, key in enumerate(keys)}
    ei = np.array([index[k] for k in kept.enroll])
    ti = np.array([index[k] for k in kept.test])
    scores = [cosine_rows(matrix[ei[s : s + _CHUNK]], matrix[ti[s : s + _CHUNK]]) for s in range(0, len(kept), _CHUNK)]
    return TrialScores(kept, np.concatenate(scores), len(trials) - len(kept), missing)


# --------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class FlippedTrial:
    """A trial the candidate decides differently from the reference at one threshold."""

    enroll: str
    test: str
    label: int  # 1 target, 0 non-target
    reference_score: float
    candidate_score: float


@dataclass(frozen=True)
class OperatingPoint:
    """One metric on both sides, and the decisions that flip at the reference's threshold."""

    name: str  # "EER" or "minDCF@<p_target>"
    p_target: float | None  # None for the EER
    reference: float  # the metric on the reference scores (EER as a fraction)
    candidate: float  # the same metric on the candidate scores
    threshold: float  # the reference's threshold: both sides accept iff score >= it
    candidate_threshold: float  # where the candidate's own metric is reached, for information
    flips: tuple[FlippedTrial, ...]  # trials accepted by one side and rejected by the other

    @property
    def difference(self) -> float:
        return self.candidate - self.reference

    @property
    def n_flips(self) -> int:
        return len(self.flips)


def _operating_point(ref: TrialScores, cand: TrialScores, p_target: float | None) -> OperatingPoint:
    if p_target is None:
        (r, t), (c, ct) = ref.eer(), cand.eer()
    else:
        (r, t), (c, ct) = ref.min_dcf(p_target), cand.min_dcf(p_target)
    # The threshold is a reference score (the lowest one accepted); decide at the midpoint below
    # it instead: the same accept set for the reference, but no trial sits on the boundary, so a
    # rounding-sized change (1e-8) flips only a decision it really crosses.
    below = ref.scores[ref.scores < t]
    if t > ref.scores.max():  # the point that accepts nothing
        t = np.inf
    else:
        t = float((t + below.max()) / 2) if below.size else -np.inf
    trials = ref.trials
    flipped = np.flatnonzero((ref.scores >= t) != (cand.scores >= t))
    flips = tuple(
        FlippedTrial(
            trials.enroll[i], trials.test[i], int(trials.labels[i]), float(ref.scores[i]), float(cand.scores[i])
        )
        for i in flipped
    )
    return OperatingPoint("EER" if p_target is None else f"minDCF@{p_target}", p_target, r, c, t, ct, flips)


@dataclass(frozen=True)
class TrialComparison:
    """Reference vs candidate scores of the same trials: score differences and flipped decisions."""

    reference: TrialScores = dataclasses.field(repr=False)
    candidate: TrialScores = dataclasses.field(repr=False)
    points: tuple[OperatingPoint, ...]  # the EER first, then minDCF at each p_target
    max_abs_diff: float  # max over trials of |candidate score - reference score|
    p99_abs_diff: float  # its 99th percentile (linear interpolation)
    median_abs_diff: float
    label: str = ""  # what was compared, e.g. "eager vs TorchScript"

    @property
    def n_flips(self) -> int:
        """Flipped decisions summed over the operating points."""
        return sum(p.n_flips for p in self.points)

    def summary(self) -> dict[str, Any]:
        """Counts, score differences and each operating point without its flipped trials; JSON-ready."""
        t = self.reference.trials
        return {
            "label": self.label,
            "scoring": {"reference": self.reference.scoring, "candidate": self.candidate.scoring},
            "n_trials": len(t),
            "n_target": t.n_target,
            "n_nontarget": t.n_nontarget,
            "skipped": self.reference.skipped,
            "n_flips": self.n_flips,
            "abs_diff": {"max": self.max_abs_diff, "p99": self.p99_abs_diff, "median": self.median_abs_diff},
            "points": [
                {
                    "name": p.name,
                    "p_target": p.p_target,
                    "reference": p.reference,
                    "candidate": p.candidate,
                    "difference": p.difference,
                    "threshold": p.threshold,
                    "candidate_threshold": p.candidate_threshold,
                    "n_flips": p.n_flips,
                }
                for p in self.points
            ],
        }

    def to_dict(self) -> dict[str, Any]:
        """:meth:`summary` plus the flipped trials of each point; ``json.dumps``-able."""
        out = self.summary()
        for entry, p in zip(out["points"], self.points):
            entry["flips"] = [dataclasses.asdict(f) for f in p.flips]
        return out

    def headline(self) -> str:
        """One line: flips per operating point and the largest score difference."""
        flips = ", ".join(f"{p.n_flips} at {p.name}" for p in self.points)
        sides = (self.reference.scoring, self.candidate.scoring)
        scoring = "" if set(sides) == {"cosine"} else f" ({' / '.join(dict.fromkeys(sides))})"
        return (
            f"{self.label or 'trials'}{scoring}: {len(self.reference)} trials, flipped decisions: {flips}; "
            f"|score diff| max {self.max_abs_diff:.2e}, p99 {self.p99_abs_diff:.2e}, median {self.median_abs_diff:.2e}"
        )

    def to_markdown(self, max_flips: int = 10) -> str:
        """Headline, a table of the metrics and flips per point, then up to ``max_flips`` flipped trials each."""
        lines = [
            self.headline(),
            "",
            "| metric | reference | candidate | difference | decision threshold | flips |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for p in self.points:
            scale, unit = (100.0, "%") if p.p_target is None else (1.0, "")
            lines.append(
                f"| {p.name} | {scale * p.reference:.4f}{unit} | {scale * p.candidate:.4f}{unit} | "
                f"{scale * p.difference:+.2e}{unit} | {p.threshold:.6f} | {p.n_flips} |"
            )
        lines += [
            "",
            "Both sides decide at the decision threshold: midway between the lowest score the reference accepts at "
            "that point (the threshold `TrialScores` reports) and the highest it rejects.",
        ]
        for p in self.points:
            if p.flips:
                lines += ["", f"flipped at {p.name} (threshold {p.threshold:.6f}):"]
                lines += [
                    f"- {f.enroll} {f.test} label {f.label}: reference {f.reference_score:.6f}, "
                    f"candidate {f.candidate_score:.6f}"
                    for f in p.flips[:max_flips]
                ]
                lines += [f"- ... and {p.n_flips - max_flips} more"] if p.n_flips > max_flips else []
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()


def _same_trials(ref: Trials, cand: Trials) -> None:
    if len(ref) != len(cand):
        raise InputError(f"reference scores {len(ref)} trials and candidate {len(cand)}; expected the same trials")
    for i, (a, b) in enumerate(zip(zip(ref.enroll, ref.test, ref.labels), zip(cand.enroll, cand.test, cand.labels))):
        if a != b:
            raise InputError(
                f"trial {i} is {a[0]} {a[1]} (label {a[2]}) in the reference but {b[0]} {b[1]} "
                f"(label {b[2]}) in the candidate; expected the same trials in the same order"
            )


def compare_trials(
    reference: TrialScores, candidate: TrialScores, p_targets: Sequence[float] = P_TARGETS, label: str = ""
) -> TrialComparison:
    """Compare two scorings of the same trials: |Δscore|, EER and minDCF, and flipped decisions.

    Decisions are taken on both sides at the reference's thresholds (its EER threshold and its
    minDCF threshold at each ``p_target``), placed midway between the lowest reference score
    accepted and the highest rejected; a trial flips when one side accepts it and the other
    rejects it.

    Raises:
        TypeError: either side is not a :class:`TrialScores`.
        ValueError: the two hold different trials, or a side lacks targets or non-targets.
    """
    for side, s in (("reference", reference), ("candidate", candidate)):
        if not isinstance(s, TrialScores):
            raise TypeError(
                f"compare_trials expects TrialScores (from score_trials) as {side}; received {type(s).__name__}"
            )
    _same_trials(reference.trials, candidate.trials)
    diff = np.abs(candidate.scores - reference.scores)  # (N,)
    points = tuple(_operating_point(reference, candidate, p) for p in (None, *p_targets))
    return TrialComparison(
        reference, candidate, points, float(diff.max()), float(np.percentile(diff, 99)), float(np.median(diff)), label
    )


def compare_embeddings(
    reference: Mapping[str, Any],
    candidate: Mapping[str, Any],
    trials: Trials,
    skip_missing: bool = False,
    p_targets: Sequence[float] = P_TARGETS,
    label: str = "",
) -> TrialComparison:
    """Score ``trials`` with both sets of embeddings and :func:`compare_trials` them.

    With ``skip_missing``, a trial is dropped from both sides when either side lacks one of
    its keys, so both score the same trials.
    """
    if skip_missing:
        shared = {key for key in reference if key in candidate}
        reference = {key: reference[key] for key in shared}
        candidate = {key: candidate[key] for key in shared}
    scored = []
    for side, embeddings in (("reference", reference), ("candidate", candidate)):
        try:
            scored.append(score_trials(embeddings, trials, skip_missing))
        except ValueError as e:
            raise InputError(f"{side}: {e}") from e
    return compare_trials(*scored, p_targets=p_targets, label=label)
