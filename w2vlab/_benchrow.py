"""The benchmark's JSON, row by row: what ``python -m w2vlab.bench`` writes and the lab's plots read.

A result (:class:`BenchResult`) holds the run's settings and, under :data:`METRICS`, one row per
metric name.  Most rows are a :class:`MetricRow`: two measured sides, each under its own name
(``"torchscript_s"``, ``"eager_s"``, ...), their :data:`RATIO` (first side over second), the
:data:`TARGET` in words and whether it is :data:`MET`, plus the metric's own extras; a row that
could not be measured says why under :data:`SKIPPED`.  The format row (:data:`FORMATS_ROW`)
holds a :class:`FormatRow` per artifact format, and the reduced-precision row
(:data:`PRECISION_ROW`) one per candidate under :data:`RUNS`.

A leaf (it imports nothing of w2vlab): the benchmark writes these rows and :mod:`w2vlab.lab._plots`
reads them, and nothing may import the benchmark, so the shape they share lives here rather than in
``w2vlab.bench``.  Not in :mod:`w2vlab._contract` either: that is the artifact's contract between
exporter and consumer, which a benchmark row is no part of.
"""

from __future__ import annotations

from typing import Any, Final, TypedDict

# result keys
METRICS: Final = "metrics"  # metric name -> row
SIZE: Final = "size"
THREADS: Final = "threads"
# row keys
RATIO: Final = "ratio"
TARGET: Final = "target"
MET: Final = "met"
SKIPPED: Final = "skipped"  # why a metric was not measured (no ratio then)
# the rows the plots read beyond the ratios, and their entries
FORMATS_ROW: Final = "formats_vs_eager_10s"
FORMATS: Final = "formats"  # format -> FormatRow
PRECISION_ROW: Final = "reduced_precision_10s"
RUNS: Final = "runs"  # candidate -> FormatRow
RATIO_VS_EAGER: Final = "ratio_vs_eager"
COSINE: Final = "cosine"  # a format's; a candidate's is per clip, its worst in WORST_COSINE
WORST_COSINE: Final = "worst_cosine"


class MetricRow(TypedDict, total=False):
    """One metric's row.  Beside these keys: each side's measurement under its own name, and extras."""

    ratio: float  # first side / second side (inf when the second is 0)
    target: str  # the goal in words, e.g. "<= 1.0 with max|diff| 0"
    met: bool | None  # None where there is no goal to meet (a skipped row)
    skipped: str  # present only when the metric was not measured: why


class FormatRow(TypedDict, total=False):
    """One format's (or reduced-precision candidate's) latency against eager on the 10 s clip, and its parity."""

    s: float
    eager_s: float
    ratio_vs_eager: float
    cosine: float | dict[str, float]  # a candidate's: per parity clip
    worst_cosine: float  # candidates only
    max_abs_diff: float
    max_rel_diff: float  # formats only: max|diff| / max|ref|, what the parity bounds hold
    bytes: int  # formats only: the file's size


class BenchResult(TypedDict, total=False):
    """The whole JSON object of one run."""

    size: str
    quick: bool
    threads: int
    repeats: int
    only: list[str] | None
    machine: dict[str, Any]
    reused: str | None
    model: dict[str, Any]  # the checkpoint measured: name, model_path (None: the random demo), source_weights_sha256
    metrics: dict[str, MetricRow]
    wall_s: dict[str, float]
    artifact_sizes: dict[str, int]
    failed: dict[str, str]


def metric_row(a_name: str, a: float, b_name: str, b: float, target: str, met: bool, **extra: Any) -> MetricRow:
    """The row of a metric comparing side ``a_name`` (value ``a``) with ``b_name`` (``b``): ``ratio`` is ``a / b``.

    Raises ``ValueError`` when a side's or an extra's name is a row key or the other side's name.
    """
    taken = [n for n in (a_name, b_name, *extra) if n in (RATIO, TARGET, MET)]
    if taken or a_name == b_name or {a_name, b_name} & set(extra):
        raise ValueError(
            f"metric_row received sides {a_name!r}, {b_name!r} and extras {sorted(extra)}; expected distinct "
            f"names, none of {RATIO!r}, {TARGET!r}, {MET!r}"
        )
    row: dict[str, Any] = {a_name: a, b_name: b, RATIO: a / b if b else float("inf"), TARGET: target, MET: bool(met)}
    return {**row, **extra}  # type: ignore[return-value]  # the sides' and extras' names are the metric's own
