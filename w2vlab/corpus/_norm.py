"""Scoring as WeSpeaker scores: mean subtraction, AS-Norm, and its score files read back.

WeSpeaker's VoxCeleb recipe does not score plain cosine.  ``wespeaker/bin/score.py`` subtracts
the mean embedding of a cohort (the training set, ``vox2_dev``: the arithmetic mean of the raw
embeddings as stored, not length-normalised) from every evaluation embedding, then takes the
cosine.  ``wespeaker/bin/score_norm.py`` then applies adaptive symmetric normalisation
(AS-Norm): with the same mean subtracted from the evaluation and the cohort embeddings, each
embedding is scored by cosine against every cohort embedding, its top-N cohort scores give a
mean ``mu`` and a standard deviation ``sigma`` (population, ddof 0), and a trial's score ``s``
becomes ``0.5 * ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t)`` (enroll and test side).  Its
recipe takes as AS-Norm cohort one mean embedding per training speaker (``tools/vector_mean.py``)
and N = 300 (``examples/voxceleb/v2/run.sh``); a top-N larger than the cohort uses the whole
cohort there (a slice), which is S-Norm: here too, with a warning.

Differences from WeSpeaker, on purpose: scores are float64 end to end (WeSpeaker writes the cosine
with 5 decimals and AS-Norm reads them back), and score files carry every digit (see
:meth:`w2vlab.corpus._trials.TrialScores.write`).

Consumer side, like :mod:`w2vlab.corpus._trials`: numpy and the standard library.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from w2vlab._contract import InputError
from w2vlab.corpus._trials import (
    P_TARGETS,
    TrialComparison,
    Trials,
    TrialScores,
    _embedding_matrix,
    compare_trials,
    load_embeddings,
    score_trials,
)

DEFAULT_TOP_N = 300  # WeSpeaker's VoxCeleb v2 recipe (run.sh: top_n=300)
_ROWS = 2048  # embeddings scored against the cohort per matrix product (bounds memory: rows x cohort)


# --------------------------------------------------------------------------- mean subtraction


def _as_matrix(embeddings: Mapping[str, Any] | np.ndarray, what: str) -> np.ndarray:
    """A finite float64 [K, D] matrix from a key -> [D] mapping or a [K, D] array; K >= 1."""
    if isinstance(embeddings, Mapping):
        if not embeddings:
            raise InputError(f"the {what} is empty; expected at least one embedding")
        try:
            return _embedding_matrix(embeddings, list(embeddings))
        except ValueError as e:
            raise InputError(f"{what}: {e}") from e
    matrix = np.asarray(embeddings, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise InputError(f"the {what} has shape {matrix.shape}; expected a non-empty [K, D] matrix of embeddings")
    if not np.isfinite(matrix).all():
        raise InputError(f"the {what} holds NaN/Inf; expected finite embeddings")
    return matrix


def cohort_mean(cohort: Mapping[str, Any] | np.ndarray) -> np.ndarray:
    """The mean embedding of a cohort, as WeSpeaker's ``score.py`` computes it (``cal_mean``).

    Args:
        cohort: key -> [D] embedding (e.g. :func:`~w2vlab.corpus._trials.load_embeddings` of the
            training set's embeddings) or a [C, D] array.  Raw embeddings, as stored: they are
            not length-normalised before averaging.

    Returns:
        [D] float64 arithmetic mean.

    Raises:
        ValueError: the cohort is empty, of mixed sizes, or holds NaN/Inf.
    """
    return _as_matrix(cohort, "mean cohort").mean(axis=0)


def load_mean(path: str | Path) -> np.ndarray:
    """A stored mean embedding: a ``.npy`` file holding a [D] float array (WeSpeaker's ``mean_vec.npy``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable ``.npy`` array, or not a finite [D] float vector.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mean file not found: {path}; expected a .npy file holding a [D] float array")
    try:
        mean = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"{path} is not a readable .npy array ({e}); expected a [D] float array") from e
    if mean.ndim != 1 or mean.size == 0 or not np.issubdtype(mean.dtype, np.number):
        raise InputError(f"{path} holds a {mean.dtype} array of shape {mean.shape}; expected a [D] float array")
    if not np.isfinite(mean).all():
        raise InputError(f"{path} holds NaN/Inf; expected a finite [D] mean embedding")
    return mean.astype(np.float64)


def save_mean(path: str | Path, mean: Any) -> Path:
    """Store a [D] mean embedding as ``.npy`` (float64), atomically; :func:`load_mean` reads it back."""
    path = Path(path)
    mean = np.asarray(mean, dtype=np.float64)
    if mean.ndim != 1 or mean.size == 0:
        raise InputError(f"received a mean of shape {mean.shape}; expected a [D] vector")
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        np.save(f, mean, allow_pickle=False)
    tmp.replace(path)
    return path


def _check_mean(mean: Any, dim: int, what: str) -> np.ndarray:
    mean = np.asarray(mean, dtype=np.float64)
    if mean.shape != (dim,):
        raise InputError(f"the mean has shape {mean.shape} but the {what} are {dim}-dimensional; expected [{dim}]")
    if not np.isfinite(mean).all():
        raise InputError("the mean holds NaN/Inf; expected a finite [D] vector")
    return mean


def subtract_mean(embeddings: Mapping[str, Any], mean: Any) -> dict[str, np.ndarray]:
    """Key -> [D] float64 embedding minus ``mean`` ([D]), each raw (not length-normalised).

    Raises:
        ValueError: ``mean`` is not [D] for the embeddings' D, or the embeddings are of mixed sizes.
    """
    if not embeddings:
        return {}
    keys = list(embeddings)
    matrix = _as_matrix(embeddings, "embeddings")  # (K, D)
    shifted = matrix - _check_mean(mean, matrix.shape[1], "embeddings")
    return dict(zip(keys, shifted))


# --------------------------------------------------------------------------- AS-Norm


def _unit_rows(matrix: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)  # (K, 1)
    if (norms == 0).any():
        raise InputError(
            f"{int((norms == 0).sum())} {what} embeddings are zero (after the mean subtraction); "
            "a zero vector has no cosine"
        )
    return matrix / norms


def _check_top_n(top_n: Any) -> int:
    if isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)) or top_n < 2:
        raise InputError(f"top_n={top_n!r}; expected an integer >= 2 (a standard deviation needs two scores)")
    return int(top_n)


def _top_n(top_n: int, cohort_size: int) -> int:
    """``top_n`` checked, and clamped to the cohort size with a warning (WeSpeaker clamps silently)."""
    top_n = _check_top_n(top_n)
    if cohort_size < 2:
        raise InputError(f"the AS-Norm cohort holds {cohort_size} embedding; expected at least 2")
    if top_n > cohort_size:
        warnings.warn(
            f"top_n={top_n} exceeds the AS-Norm cohort ({cohort_size} embeddings); using all {cohort_size} "
            "(as WeSpeaker does: S-Norm)",
            stacklevel=3,
        )
        return cohort_size
    return int(top_n)


def cohort_stats(embeddings: np.ndarray, cohort: np.ndarray, top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each embedding's ``top_n`` highest cosines against the cohort.

    Args:
        embeddings: [K, D] (mean already subtracted, if any).
        cohort: [C, D], the same way.
        top_n: cohort scores kept per embedding, >= 2; above C, C (with a warning).

    Returns:
        ``(mu, sigma)``, each [K] float64; ``sigma`` is the population standard deviation (ddof 0).
    """
    embeddings, cohort = _as_matrix(embeddings, "embeddings"), _as_matrix(cohort, "AS-Norm cohort")
    if embeddings.shape[1] != cohort.shape[1]:
        raise InputError(
            f"the AS-Norm cohort is {cohort.shape[1]}-dimensional but the embeddings are "
            f"{embeddings.shape[1]}-dimensional; expected the same model's embeddings"
        )
    n = _top_n(top_n, cohort.shape[0])
    c = _unit_rows(cohort, "AS-Norm cohort").T  # (D, C)
    e = _unit_rows(embeddings, "trial")  # (K, D)
    mu, sigma = np.empty(len(e)), np.empty(len(e))
    for start in range(0, len(e), _ROWS):
        scores = e[start : start + _ROWS] @ c  # (rows, C)
        scores.partition(scores.shape[1] - n, axis=1)  # in place: the n highest last, unordered
        top = scores[:, -n:]  # (rows, n)
        mu[start : start + _ROWS], sigma[start : start + _ROWS] = top.mean(axis=1), top.std(axis=1)
    return mu, sigma


def as_norm(scores: TrialScores, embeddings: Mapping[str, Any], cohort: Any, top_n: int = DEFAULT_TOP_N) -> TrialScores:
    """Adaptive symmetric normalisation of cosine scores, as WeSpeaker's ``score_norm.py`` (``asnorm``).

    Args:
        scores: the cosine scores of the trials (from ``embeddings``).
        embeddings: key -> [D] embedding the scores were computed from (mean subtracted, if any).
        cohort: key -> [D] embedding or a [C, D] array, the same mean subtracted.
        top_n: cohort scores per side.

    Returns:
        The same trials scored ``0.5 * ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t)``.

    Raises:
        ValueError: empty or too small cohort, dimensions that differ, ``top_n`` < 2, a key whose
            top-N cohort scores are all equal (no spread to divide by).
    """
    trials = scores.trials
    keys = trials.keys
    cohort = _as_matrix(cohort, "AS-Norm cohort")
    mu, sigma = cohort_stats(_embedding_matrix(embeddings, keys), cohort, top_n)  # (K,) each
    n = min(int(top_n), len(cohort))
    flat = [keys[i] for i in np.flatnonzero(sigma == 0)]
    if flat:
        raise InputError(
            f"the top-{n} AS-Norm cohort scores of {len(flat)} keys ({', '.join(flat[:10])}) are all equal; "
            "no spread to normalise by (a cohort of copies?)"
        )
    index = {key: i for i, key in enumerate(keys)}
    ei = np.array([index[k] for k in trials.enroll])
    ti = np.array([index[k] for k in trials.test])
    s = scores.scores
    normed = 0.5 * ((s - mu[ei]) / sigma[ei] + (s - mu[ti]) / sigma[ti])  # (N,)
    return dataclasses.replace(scores, scores=normed, scoring=f"{scores.scoring}, AS-Norm top-{n}")


# --------------------------------------------------------------------------- one scoring, both sides


@dataclass(frozen=True, eq=False)
class ScoreNorm:
    """How to score: plain cosine (the default), mean-subtracted, and/or AS-Norm'ed.

    Both the evaluation and the AS-Norm cohort embeddings have ``mean`` subtracted, as in
    WeSpeaker's recipe; all must come from the same model (for a comparison: one per side).
    """

    mean: np.ndarray | None = None  # [D] subtracted before scoring; None: none
    cohort: np.ndarray | None = None  # [C, D] raw AS-Norm cohort; None: no AS-Norm
    top_n: int = DEFAULT_TOP_N

    def __post_init__(self) -> None:
        if self.mean is not None:
            mean = np.asarray(self.mean, dtype=np.float64)
            if mean.ndim != 1 or mean.size == 0:
                raise InputError(f"received a mean of shape {mean.shape}; expected a [D] vector")
            object.__setattr__(self, "mean", _check_mean(mean, mean.size, "embeddings"))
        if self.cohort is not None:
            cohort = _as_matrix(self.cohort, "AS-Norm cohort")
            if self.mean is not None:
                cohort = cohort - _check_mean(self.mean, cohort.shape[1], "AS-Norm cohort embeddings")
            object.__setattr__(self, "cohort", cohort)  # mean subtracted once, here
        _check_top_n(self.top_n)  # early; the clamp to the cohort size (and its warning) comes when scoring

    @classmethod
    def load(
        cls,
        mean_from: str | Path | None = None,
        mean: str | Path | None = None,
        cohort: str | Path | None = None,
        top_n: int | None = None,
    ) -> ScoreNorm:
        """From files: the mean of the embeddings at ``mean_from`` or the ``.npy`` at ``mean`` (not both),
        and the AS-Norm cohort at ``cohort``; embeddings as :func:`load_embeddings` reads them
        (an ``embed-corpus`` directory or a Kaldi ``.scp``)."""
        if mean_from is not None and mean is not None:
            raise InputError(f"received a mean cohort ({mean_from}) and a stored mean ({mean}); expected one of them")
        if top_n is not None and cohort is None:
            raise InputError(f"received top_n={top_n} without an AS-Norm cohort; top-N goes with AS-Norm")
        if mean_from is not None:
            mean = cohort_mean(load_embeddings(mean_from))
        elif mean is not None:
            mean = load_mean(mean)
        if cohort is not None:
            cohort = _as_matrix(load_embeddings(cohort), f"AS-Norm cohort {cohort}")
        return cls(mean, cohort, DEFAULT_TOP_N if top_n is None else top_n)

    def score(self, embeddings: Mapping[str, Any], trials: Trials, skip_missing: bool = False) -> TrialScores:
        """Score ``trials`` from ``embeddings`` (key -> [D]) this way; see :func:`score_trials`."""
        if self.mean is not None:
            needed = set(trials.keys)
            embeddings = subtract_mean({k: v for k, v in embeddings.items() if k in needed}, self.mean)
        scored = score_trials(embeddings, trials, skip_missing)
        if self.mean is not None:
            scored = dataclasses.replace(scored, scoring="cosine, mean-subtracted")
        if self.cohort is not None:
            scored = as_norm(scored, embeddings, self.cohort, self.top_n)
        return scored


def score_trials_normed(
    embeddings: Mapping[str, Any],
    trials: Trials,
    mean: Any = None,
    cohort: Any = None,
    top_n: int = DEFAULT_TOP_N,
    skip_missing: bool = False,
) -> TrialScores:
    """:func:`~w2vlab.corpus._trials.score_trials` after subtracting ``mean`` ([D], e.g.
    :func:`cohort_mean`) and then, with a ``cohort`` (key -> [D] or [C, D]), :func:`as_norm`."""
    if isinstance(cohort, Mapping):
        cohort = _as_matrix(cohort, "AS-Norm cohort")
    return ScoreNorm(mean, cohort, top_n).score(embeddings, trials, skip_missing)


def compare_embeddings_normed(
    reference: Mapping[str, Any],
    candidate: Mapping[str, Any],
    trials: Trials,
    reference_norm: ScoreNorm = ScoreNorm(),
    candidate_norm: ScoreNorm = ScoreNorm(),
    skip_missing: bool = False,
    p_targets: Sequence[float] = P_TARGETS,
    label: str = "",
) -> TrialComparison:
    """:func:`~w2vlab.corpus._trials.compare_embeddings`, each side scored its own way: its own
    mean and cohort, embedded by the same model as that side.  Flips are counted on the normalised
    scores, at the reference's thresholds."""
    if skip_missing:
        shared = {key for key in reference if key in candidate}
        reference = {key: reference[key] for key in shared}
        candidate = {key: candidate[key] for key in shared}
    scored = []
    for side, embeddings, norm in (("reference", reference, reference_norm), ("candidate", candidate, candidate_norm)):
        try:
            scored.append(norm.score(embeddings, trials, skip_missing))
        except ValueError as e:
            raise InputError(f"{side}: {e}") from e
    return compare_trials(*scored, p_targets=p_targets, label=label)


# --------------------------------------------------------------------------- score files


def read_scores(path: str | Path) -> TrialScores:
    """Read a WeSpeaker score file: ``<enroll> <test> <score> <target|nontarget>`` lines (extra
    columns, as ``score_norm.py`` writes, are ignored).

    Raises:
        FileNotFoundError: no such file.
        ValueError: no lines, or a line without a float score and a target/nontarget label.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"score file not found: {path}")
    enroll, test, scores, labels = [], [], [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) < 4 or fields[3] not in ("target", "nontarget"):
                raise InputError("no label")
            scores.append(float(fields[2]))
        except ValueError:
            raise InputError(
                f"{path}, line {n}: {line!r}; expected `<enroll> <test> <score> <target|nontarget>`"
            ) from None
        enroll.append(fields[0])
        test.append(fields[1])
        labels.append(int(fields[3] == "target"))
    if not scores:
        raise InputError(f"{path} holds no scores; expected `<enroll> <test> <score> <target|nontarget>` lines")
    return TrialScores(Trials(tuple(enroll), tuple(test), labels, "wespeaker", str(path)), np.array(scores))
