"""Parity: how close two sets of embeddings are, clip by clip.

:func:`compare` is the one parity check in w2vlab; tests, the CLI report, the notebooks and
:mod:`w2vlab.lab._plots` all read its :class:`ParityReport`.  Everything is computed in float64
so the measurement adds no error of its own, and a NaN or Inf on either side is an error,
never a silent pass (every comparison with NaN is False, so ``nan <= bound`` cannot fail).

Cosine is computed as ``1 - ||a/|a| - b/|b|||^2 / 2``: equal to the usual dot-product form,
but exact for identical rows and free of cancellation when ``1 - cos`` is ~1e-12.

Every bound is scale-free: a clip is judged by its cosine and by its *relative* max|diff|,
``max_d |ref[d] - cand[d]| / max_d |ref[d]|``, so multiplying both sides by any factor leaves the
verdict unchanged (a trained speaker model's embeddings have norms of 10-20, the demo's about 1;
float32 rounding grows with the values).  The absolute max|diff| is still measured and reported,
and can be bounded as well (:attr:`ParityBounds.max_abs_diff`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# The relative max|diff| the describe() texts name, with the quantity spelled out.
REL_DIFF_TEXT = "max|ref - cand| / max|ref|"


@dataclass(frozen=True)
class ParityBounds:
    """Pass/fail bounds for one clip, independent of the embeddings' scale.

    The defaults are for eager vs export of the same float32 graph (TorchScript, reloaded
    artifact), where only kernel-order rounding differs.  Loosen them for anything that
    changes the arithmetic (fp16/bf16, quantisation, another frontend).

    ``max_rel_diff`` bounds ``max|ref - cand| / max|ref|`` per clip (None: not bounded); an exact
    copy is held to exactly 0 with ``max_rel_diff=0.0``.  ``max_abs_diff`` additionally bounds the
    absolute ``max|ref - cand|`` where given; it depends on the checkpoint's embedding scale, so
    no default uses it.
    """

    min_cosine: float = 0.99999  # a clip passes if cosine >= min_cosine ...
    # ... and max|ref - cand| / max|ref| <= max_rel_diff.  3e-5: the absolute 1e-5 it replaces, taken at the
    # smallest max|ref| of the demo on the quick suite (0.33 tiny, 0.41 small, 0.49 full), so the demo is held
    # as tightly as before; the worst measured is 3.5e-6 (full size, waveform; 1.3e-6 tiny and small; ONNX
    # waveform below), 8.6x inside it.  Scaled to embedding norm 15 (max|ref| 3.4-8.7) the same exports measure the same
    # relative values, while their absolute max|diff| reaches 6e-6 (TorchScript) and 1.2e-4 (ONNX waveform).
    max_rel_diff: float | None = 3e-5
    # Clips of fewer than short_clip_samples samples (when the report knows each clip's length) are
    # held to short_clip_min_cosine instead: noise that stats pooling averages away over many frames
    # stays whole on a clip of one or two.  0 (the default) holds every clip to min_cosine.
    short_clip_samples: int = 0
    short_clip_min_cosine: float = 1.0
    max_abs_diff: float | None = None  # ... and, where given, max|ref - cand| <= max_abs_diff

    def __post_init__(self) -> None:
        for name in ("min_cosine", "short_clip_min_cosine"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} is not a cosine; expected a value in [-1, 1]")
        for name in ("max_rel_diff", "max_abs_diff"):
            value = getattr(self, name)
            if value is not None and not value >= 0.0:  # also rejects NaN
                raise ValueError(f"{name}={value}; expected a non-negative number, or None for no bound")
        if self.short_clip_samples < 0:
            raise ValueError(f"short_clip_samples={self.short_clip_samples}; expected a count >= 0")

    def min_cosine_for(self, num_samples: int | None) -> float:
        """The cosine bound of a clip of ``num_samples`` samples (None: length unknown, the main bound)."""
        if num_samples is not None and num_samples < self.short_clip_samples:
            return self.short_clip_min_cosine
        return self.min_cosine

    def describe(self, spec: str = ".0e") -> str:
        """The bounds in words, e.g. ``cosine >= 0.999 (>= 0.998 under 8000 samples), max|diff|/max|ref| <= 1e-04``;
        ``spec`` formats the max|diff| bounds."""
        short = (
            f" (>= {self.short_clip_min_cosine} under {self.short_clip_samples} samples)"
            if self.short_clip_samples
            else ""
        )
        parts = [f"cosine >= {self.min_cosine}{short}"]
        if self.max_rel_diff is not None:
            parts.append(f"max|diff|/max|ref| <= {self.max_rel_diff:{spec}}")
        if self.max_abs_diff is not None:
            parts.append(f"max|diff| <= {self.max_abs_diff:{spec}}")
        return ", ".join(parts)

    def bounded(self) -> str:
        """What is bounded, each quantity spelled out: the text ``parity.json``, ``metadata.json`` and the
        model card carry, e.g.
        ``cosine >= 0.99999, relative max|diff| (max|ref - cand| / max|ref|) <= 3.0e-05 per clip``."""
        text = self.describe(".1e").replace("max|diff|/max|ref|", f"relative max|diff| ({REL_DIFF_TEXT})")
        return text.replace(", max|diff| <=", ", absolute max|diff| <=") + " per clip"


# ONNX Runtime's DFT is not pocketfft (torch's and numpy's FFT), so the ONNX waveform program's
# log-mels differ from HF's by an ulp in ~5% of values; per-bin normalisation amplifies that on
# the shortest clips.  Measured on one 560-sample clip, max|diff| / max|ref|: 9.4e-6 (tiny demo),
# 3.5e-5 ("small": 1.4e-5 of max|ref| 0.41), 9.6e-5 ("full": 4.7e-5 of 0.49, cosine 1 - 3e-9; every
# other clip of its suite within 4e-6, 8e-6 of max|ref|).  10x the default, as the absolute 1e-4 was
# (3.1x inside it at full size, where the absolute bound left 2.1x).
ONNX_WAVEFORM_MAX_REL_DIFF = 3e-4
# Dynamic int8 (weights of every MatMul quantised per output channel, activations per call) is a
# different model, not a bit-exact copy: it is held to cosine >= 0.999 as WeSpeaker's int8
# exports are; max|diff| (measured 7e-3 tiny, 1e-2 full size: 1.4e-2 to 2e-2 of max|ref|) is recorded
# and only loosely bounded, to 0.3 of max|ref| (the absolute 0.1 it replaces, at the demos' smallest max|ref|).
# Clips under 0.5 s are held to 0.998: at full size the quantisation noise of one or two feature
# rows is not averaged away (cosine 0.99843-0.99862 on one row, 0.9988 on two, 0.9992 on three,
# 0.9996 on nine, the stock ONNX graph the same), and no verification system scores such clips.
INT8_BOUNDS = ParityBounds(min_cosine=0.999, max_rel_diff=0.3, short_clip_samples=8000, short_clip_min_cosine=0.998)


def _loosest(a: float | None, b: float | None) -> float | None:
    """The looser of two max|diff| bounds, None (no bound) being the loosest."""
    return None if a is None or b is None else max(a, b)


def format_bounds(fmt: str, mode: str, bounds: ParityBounds = ParityBounds()) -> ParityBounds:
    """The bounds a ``fmt``/``mode`` artifact file is verified with: ``bounds``, with the relative max|diff|
    loosened to :data:`ONNX_WAVEFORM_MAX_REL_DIFF` for ONNX (and OpenVINO) waveform programs (cosine and any
    absolute bound unchanged), and :data:`INT8_BOUNDS` (its short-clip bound included) for the int8 copy,
    which is judged by cosine (no absolute bound)."""
    if fmt == "onnx-int8":
        return dataclasses.replace(
            INT8_BOUNDS,
            min_cosine=min(bounds.min_cosine, INT8_BOUNDS.min_cosine),
            max_rel_diff=_loosest(bounds.max_rel_diff, INT8_BOUNDS.max_rel_diff),
            short_clip_min_cosine=min(bounds.min_cosine, INT8_BOUNDS.short_clip_min_cosine),
        )
    if fmt in ("onnx", "openvino") and mode == "waveform":  # the IR is the ONNX program: its own DFT kernels, fp32
        return dataclasses.replace(bounds, max_rel_diff=_loosest(bounds.max_rel_diff, ONNX_WAVEFORM_MAX_REL_DIFF))
    return bounds


@dataclass(frozen=True)
class ClipParity:
    """Parity of one clip's embedding: reference (eager) vs candidate (export)."""

    name: str
    cosine: float  # cos(reference, candidate), in [-1, 1]
    l2: float  # ||reference - candidate||_2
    max_abs_diff: float  # max_d |reference[d] - candidate[d]|
    num_samples: int | None = None  # the clip's length, where the caller gave it (short-clip bounds)
    max_abs_ref: float | None = None  # max_d |reference[d]|, the scale max|diff| is relative to (compare sets it)

    @property
    def max_rel_diff(self) -> float | None:
        """``max_abs_diff / max_abs_ref``: 0 where both are 0, inf for a zero reference and a nonzero
        candidate, None where the scale is unknown."""
        if self.max_abs_ref is None:
            return None
        if self.max_abs_ref == 0.0:
            return 0.0 if self.max_abs_diff == 0.0 else float("inf")
        return self.max_abs_diff / self.max_abs_ref

    def passed(self, bounds: ParityBounds) -> bool:
        """Within every bound of ``bounds``; a clip of unknown scale fails a relative bound (never a silent pass)."""
        rel = self.max_rel_diff
        return (
            self.cosine >= bounds.min_cosine_for(self.num_samples)
            and (bounds.max_rel_diff is None or (rel is not None and rel <= bounds.max_rel_diff))
            and (bounds.max_abs_diff is None or self.max_abs_diff <= bounds.max_abs_diff)
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields and ``max_rel_diff``, as JSON-ready plain Python values."""
        return {**dataclasses.asdict(self), "max_rel_diff": self.max_rel_diff}


@dataclass(frozen=True)
class ParityReport:
    """Per-clip parity of a whole suite, judged against one set of bounds."""

    clips: tuple[ClipParity, ...]
    bounds: ParityBounds = ParityBounds()
    label: str = ""  # what was compared, e.g. "eager vs TorchScript (padded batch)"

    def __post_init__(self) -> None:
        object.__setattr__(self, "clips", tuple(self.clips))
        if not self.clips:
            raise ValueError("a ParityReport needs at least one clip; received none")
        names = [c.name for c in self.clips]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"clip names must be unique; {duplicates} occur more than once")

    @property
    def worst_cosine(self) -> float:
        return min(c.cosine for c in self.clips)

    @property
    def worst_l2(self) -> float:
        return max(c.l2 for c in self.clips)

    @property
    def worst_max_abs_diff(self) -> float:
        return max(c.max_abs_diff for c in self.clips)

    @property
    def worst_max_rel_diff(self) -> float | None:
        """The largest ``max|ref - cand| / max|ref|`` of any clip; None when a clip's scale is unknown."""
        rels = [c.max_rel_diff for c in self.clips]
        return None if any(r is None for r in rels) else max(rels)

    @property
    def failures(self) -> tuple[str, ...]:
        """Names of the clips outside the bounds."""
        return tuple(c.name for c in self.clips if not c.passed(self.bounds))

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> dict[str, Any]:
        """Worst values and the verdict, as JSON-ready plain Python values."""
        return {
            "label": self.label,
            "n_clips": len(self.clips),
            "passed": self.passed,
            "failures": list(self.failures),
            "worst_cosine": self.worst_cosine,
            "worst_l2": self.worst_l2,
            "worst_max_abs_diff": self.worst_max_abs_diff,
            "worst_max_rel_diff": self.worst_max_rel_diff,
            "bounded": self.bounds.bounded(),
            "bounds": dataclasses.asdict(self.bounds),
        }

    def to_dict(self) -> dict[str, Any]:
        """:meth:`summary` plus one entry per clip; ``json.dumps``-able."""
        return {**self.summary(), "clips": [c.to_dict() for c in self.clips]}

    def headline(self) -> str:
        """One line: verdict, clip count and the worst value of each metric (max|diff| absolute, then
        relative to max|ref|)."""
        verdict = "PASS" if self.passed else f"FAIL ({len(self.failures)} clips)"
        return (
            f"{self.label or 'parity'}: {verdict} on {len(self.clips)} clips; worst cosine "
            f"{self.worst_cosine:.9f}, worst L2 {self.worst_l2:.2e}, worst max|diff| {self.worst_max_abs_diff:.2e}, "
            f"worst max|diff|/max|ref| {_format_rel(self.worst_max_rel_diff)} (bounds: {self.bounds.describe()})"
        )

    def to_markdown(self) -> str:
        """A compact Markdown table: verdict line, then one row per clip."""
        b = self.bounds
        head = f"**{self.label}**: " if self.label else ""
        lines = [
            f"{head}{'PASS' if self.passed else 'FAIL'} ({len(self.clips)} clips; bounds: {b.describe('.1e')})",
            "",
            "| clip | cosine | 1 - cos | L2 | max abs diff | max abs diff / max abs ref | ok |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for c in self.clips:
            ok = "ok" if c.passed(b) else "FAIL"
            lines.append(
                f"| {c.name} | {c.cosine:.9f} | {1.0 - c.cosine:.2e} | {c.l2:.2e} | {c.max_abs_diff:.2e} | "
                f"{_format_rel(c.max_rel_diff)} | {ok} |"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()

    @classmethod
    def merge(cls, *reports: ParityReport, label: str = "") -> ParityReport:
        """Concatenate reports judged against the same bounds into one.

        Clip names are prefixed with their report's label (``"padded/clip0"``) where it has
        one, so suites that reuse ``clip0, clip1, ...`` stay distinguishable.
        """
        if not reports:
            raise ValueError("merge needs at least one ParityReport; received none")
        for r in reports:
            if not isinstance(r, ParityReport):
                raise TypeError(f"merge expects ParityReport objects; received {type(r).__name__}")
        bounds = reports[0].bounds
        if any(r.bounds != bounds for r in reports):
            found = sorted({str(r.bounds) for r in reports})
            raise ValueError(f"cannot merge reports judged against different bounds: {found}")
        clips = [
            dataclasses.replace(c, name=f"{r.label}/{c.name}" if r.label else c.name) for r in reports for c in r.clips
        ]
        return cls(tuple(clips), bounds, label)


def _format_rel(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2e}"


def merge_reports(reports: Sequence[ParityReport], label: str = "") -> ParityReport:
    """Module-level spelling of :meth:`ParityReport.merge`."""
    return ParityReport.merge(*reports, label=label)


def _to_float64(x: Any, side: str) -> np.ndarray:
    """torch tensor / numpy array / nested lists / list of row vectors -> float64 ndarray."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        return x.detach().cpu().double().numpy()
    if isinstance(x, (list, tuple)) and x and all(hasattr(v, "shape") for v in x):  # list of [D] or [1, D] rows
        rows = [_to_float64(v, side) for v in x]
        rows = [r[0] if r.ndim == 2 and r.shape[0] == 1 else r for r in rows]
        shapes = sorted({r.shape for r in rows})
        if len(shapes) != 1 or len(shapes[0]) != 1:
            raise ValueError(f"{side}: a list of rows must hold [D] vectors of one length; received shapes {shapes}")
        return np.stack(rows)
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"{side}: expected a torch tensor, numpy array or list of vectors; received {type(x).__name__}"
        ) from e


def _matrix(x: Any, side: str, expected: str) -> np.ndarray:
    m = _to_float64(x, side)
    if m.ndim != 2:
        raise ValueError(f"{side}: expected 2-D {expected}; received shape {tuple(m.shape)}")
    if m.shape[0] < 1 or m.shape[1] < 1:
        raise ValueError(f"{side}: expected at least one row and one column; received shape {tuple(m.shape)}")
    return m


def _check_finite(m: np.ndarray, side: str, names: Sequence[str] | None = None) -> str | None:
    """A message naming the rows of ``m`` holding NaN/Inf, or None when all are finite."""
    bad = np.flatnonzero(~np.isfinite(m).all(axis=1))
    if bad.size == 0:
        return None
    shown = bad[:10].tolist()
    more = f" and {bad.size - 10} more" if bad.size > 10 else ""
    which = f" ({', '.join(names[i] for i in shown)}{more})" if names is not None else more
    return f"{side} has NaN/Inf in rows {shown}{which}"


def as_matrix(x: Any, side: str = "input", expected: str = "[N, D] embeddings") -> np.ndarray:
    """Convert ``x`` to a finite float64 matrix, or raise a ValueError saying what is wrong.

    Args:
        x: torch tensor, numpy array, or a list of [D] (or [1, D]) vectors.
        side: what ``x`` is, for the error message.
        expected: the 2-D layout expected, for the error message.

    Returns:
        float64 ndarray of shape [N, D].
    """
    m = _matrix(x, side, expected)
    problem = _check_finite(m, side)
    if problem:
        raise ValueError(problem)
    return m


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of [N, D] float64 matrices -> [N] in [-1, 1]; zero rows: 1 if both are zero, else 0.

    The one cosine of w2vlab (parity, scores, similarity plots)."""
    na = np.linalg.norm(a, axis=1, keepdims=True)  # (N, 1)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    u = np.divide(a, na, out=np.zeros_like(a), where=na > 0)
    v = np.divide(b, nb, out=np.zeros_like(b), where=nb > 0)
    cos = 1.0 - 0.5 * np.sum((u - v) ** 2, axis=1)  # (N,)
    zero_a, zero_b = na[:, 0] == 0, nb[:, 0] == 0
    cos = np.where(zero_a | zero_b, np.where(zero_a & zero_b, 1.0, 0.0), cos)
    return np.clip(cos, -1.0, 1.0)


def compare(
    reference: Any,
    candidate: Any,
    names: Sequence[str] | None = None,
    bounds: ParityBounds = ParityBounds(),
    label: str = "",
    num_samples: Sequence[int] | None = None,
) -> ParityReport:
    """Compare two sets of embeddings row by row.

    Args:
        reference: [N, D] embeddings from the trusted side (eager model); torch tensor,
            numpy array, or a list of N [D] vectors.
        candidate: [N, D] embeddings from the side under test (exported artifact).
        names: N clip names; default ``clip0, clip1, ...``.
        bounds: pass/fail bounds applied to every clip.
        label: what was compared, shown in summaries and plot titles.
        num_samples: N clip lengths, for bounds with a short-clip cosine; default unknown.

    Returns:
        A :class:`ParityReport` with cosine, L2, max|diff| and max|reference| per clip (so the relative
        max|diff| too), computed in float64.

    Raises:
        ValueError: shapes differ or are not [N, D] with N, D >= 1; ``names`` has the wrong
            length; either side holds NaN/Inf (the message names the side and rows).
    """
    ref = _matrix(reference, "reference", "[N, D] embeddings")
    cand = _matrix(candidate, "candidate", "[N, D] embeddings")
    if ref.shape != cand.shape:
        raise ValueError(
            f"reference has shape {tuple(ref.shape)} but candidate has shape {tuple(cand.shape)}; "
            "both must be the same [N, D]"
        )
    n = ref.shape[0]
    names = [f"clip{i}" for i in range(n)] if names is None else [str(s) for s in names]
    if len(names) != n:
        raise ValueError(f"received {len(names)} names for {n} embeddings; expected one name per row")
    lengths = [None] * n if num_samples is None else [int(k) for k in num_samples]
    if len(lengths) != n:
        raise ValueError(f"received {len(lengths)} clip lengths for {n} embeddings; expected one per row")
    problems = [p for p in (_check_finite(ref, "reference", names), _check_finite(cand, "candidate", names)) if p]
    if problems:
        raise ValueError("; ".join(problems) + "; a non-finite embedding cannot be compared")

    diff = ref - cand  # (N, D)
    cosine = cosine_rows(ref, cand)  # (N,)
    l2 = np.linalg.norm(diff, axis=1)
    max_abs = np.abs(diff).max(axis=1)
    max_ref = np.abs(ref).max(axis=1)  # (N,): the scale max|diff| is judged relative to
    clips = tuple(
        ClipParity(name, float(c), float(d), float(m), k, float(r))
        for name, c, d, m, k, r in zip(names, cosine, l2, max_abs, lengths, max_ref)
    )
    return ParityReport(clips, bounds, label)
