"""Figures for parity reports, features, latency, pruned layer widths and trial decisions.

Every function only draws: it takes numbers (usually a :class:`~w2vlab._parity.ParityReport`)
and returns a :class:`matplotlib.figure.Figure`.  Figures are built without pyplot, so no
global state, no window and no ``plt.show()``: they work headless (Agg) and render in a
notebook with ``display(fig)``; ``fig.savefig(path)`` writes them to disk.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from w2vlab._contract import SAMPLE_RATE, require

require("matplotlib", needed_by="w2vlab's figures", hint="pip install 'w2vlab[lab]'")
import matplotlib  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402  (after the check, which names the extra)
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from w2vlab._benchrow import (  # noqa: E402
    COSINE,
    FORMATS,
    FORMATS_ROW,
    MET,
    METRICS,
    PRECISION_ROW,
    RATIO,
    RATIO_VS_EAGER,
    RUNS,
    SIZE,
    TARGET,
    THREADS,
    WORST_COSINE,
    BenchResult,
    FormatRow,
    MetricRow,
)
from w2vlab._features import FeatureConfig  # noqa: E402
from w2vlab._parity import ParityReport, as_matrix, compare, cosine_rows  # noqa: E402
from w2vlab.corpus._trials import TrialComparison, TrialScores, compare_trials, det_curve  # noqa: E402

PASS_COLOR = "tab:blue"
FAIL_COLOR = "tab:red"
BOUND_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.0}


EXACT_BAND_COLOR = "0.92"  # the band at the bottom of a log axis where exact zeros are drawn
SINGLE_MARKER, BATCH_MARKER = "o", "^"
_BATCH_ROW = re.compile(r"(?:.*/)?batch_[^/\[]*\[(\d+)\]")


def _short_name(name: str, limit: int = 16) -> str:
    """A label that fits beside a point: a padded batch's row ``batch_160000+16161+24000+8160[3]`` becomes
    ``batch[3]``; other names longer than ``limit`` keep their start and end around an ellipsis."""
    match = _BATCH_ROW.fullmatch(name)
    if match:
        return f"batch[{match.group(1)}]"
    if len(name) <= limit:
        return name
    head = (limit - 1) // 2
    return f"{name[:head]}…{name[-(limit - 1 - head) :]}"


def _decades(lo: float, hi: float) -> list[float]:
    """Powers of ten from ``lo`` to ``hi`` (both powers of ten), thinned to at most 7 ticks."""
    exps = list(range(round(math.log10(lo)), round(math.log10(hi)) + 1))
    step = max(1, math.ceil(len(exps) / 7))
    return [10.0**e for e in exps[::-1][::step][::-1]]


def _error_axis(values: Sequence[float], bound: float | None) -> tuple[float, float, float]:
    """(band_top, exact_y, top) of a log error axis: the exact band spans a decade below ``band_top``, a decade
    under the smallest positive value (or the bound); exact zeros are drawn at ``exact_y``, in the band's middle."""
    positive = [v for v in (*values, bound or 0.0) if v is not None and 0 < v < math.inf]
    low = min(positive) if positive else 1e-6
    band_top = 10.0 ** (math.floor(math.log10(low)) - 1)
    top = 10.0 ** (math.ceil(math.log10(max([*positive, band_top * 10]))) + 1)  # a decade of headroom
    return band_top, band_top / 10**0.7, top


def _closest(values: Sequence[float], bounds: Sequence[float | None]) -> int:
    """Index of the clip closest to (or furthest over) its own bound; the largest value where none is bounded."""

    def share(i: int) -> float:
        v, b = values[i], bounds[i]
        if b is None:
            return -math.inf if v == 0 else -1.0 / v  # unbounded: below any bounded share, larger values first
        return v / b if b > 0 else (math.inf if v > 0 else 0.0)

    return max(range(len(values)), key=share)


def _headroom(values: Sequence[float], bounds: Sequence[float | None]) -> str:
    """The panel's verdict in words: the clip closest to (or furthest over) its own bound, and the headroom."""
    if all(b is None for b in bounds):
        worst = max(values)
        return "exact on every clip, not bounded" if worst == 0 else f"worst {worst:.1e}, not bounded"
    pairs = [(v, b) for v, b in zip(values, bounds) if b is not None]
    if all(v == 0 for v, _ in pairs):
        return f"exact on every clip (bound {max(b for _, b in pairs):.0e})"
    v, b = pairs[_closest([v for v, _ in pairs], [b for _, b in pairs])]
    if v > b:
        return f"{v:.1e} > bound {b:.0e}: outside"
    ratio = b / v if v else math.inf
    return f"closest to its bound: {v:.1e} vs {b:.0e}, {ratio:.3g}x headroom"


@dataclass(frozen=True)
class _Panel:
    """One error panel of :func:`plot_parity`: a value per clip, which of them fail, and the bound drawn."""

    title: str
    values: list[float]
    failed: np.ndarray  # [N] bool
    segments: list[tuple[float, float, float]]  # (x0, x1, bound) drawn as lines; 0 is drawn at the band's top
    bounds: list[float | None]  # each clip's own bound, the headroom is measured against


def _drawn_y(values: Sequence[float], exact_y: float, top: float) -> np.ndarray:
    """Where each error is drawn on a log axis from :func:`_error_axis`: zeros in the exact band, infinities
    near the top, the rest at their value."""
    return np.array([exact_y if v == 0 else top / 3 if not math.isfinite(v) else v for v in values])


def _log_error_axis(ax: Any, band_top: float, top: float) -> None:
    """The log y axis of an error panel from :func:`_error_axis`: the grey "exact (0)" band at the bottom and
    a tick per decade."""
    ax.axhspan(band_top / 10, band_top, color=EXACT_BAND_COLOR, zorder=0)
    ax.text(
        0.01, band_top / 10**0.08, "exact (0)", transform=ax.get_yaxis_transform(), va="top", fontsize=7, color="0.3"
    )
    ax.set_yscale("log")
    ax.set_ylim(band_top / 10, top)
    ax.set_yticks(_decades(band_top, top))
    ax.yaxis.set_minor_locator(NullLocator())


def _error_panel(ax: Any, x: np.ndarray, panel: _Panel, names: list[str], kinds: dict[str, Any], log_x: bool) -> None:
    """Dots of one error per clip at ``x`` on a log axis: zeros in a labelled "exact" band at the bottom,
    infinities at the top, failures red and named (else the worst clip named)."""
    values, failed = panel.values, panel.failed
    largest = max([b for b in panel.bounds if b is not None], default=None)
    band_top, exact_y, top = _error_axis([v for v in values if math.isfinite(v)], largest)
    y = _drawn_y(values, exact_y, top)
    for marker, mask in kinds.values():
        for bad in (False, True):
            sel = mask & (failed == bad)
            if sel.any():
                ax.scatter(x[sel], y[sel], marker=marker, s=28, color=FAIL_COLOR if bad else PASS_COLOR, zorder=3)
    for x0, x1, b in panel.segments:
        ax.hlines(max(b, band_top), x0, x1, zorder=2, **BOUND_STYLE)
    _log_error_axis(ax, band_top, top)
    ax.set_title(f"{panel.title}\n{_headroom(values, panel.bounds)}", fontsize=9)
    _name_points(ax, x, y, names, _named(values, panel, x, y, log_x), log_x)


def _named(values: list[float], panel: _Panel, x: np.ndarray, y: np.ndarray, log_x: bool) -> list[int]:
    """The clips to name: up to 3 failing ones, furthest over first, none close to another already named
    (labels would overlap); where none fails, the clip closest to its bound (none when it is exact)."""
    worst = _closest(values, panel.bounds)
    failing = sorted(np.flatnonzero(panel.failed).tolist(), key=lambda i: -y[i])
    if not failing:
        return [] if values[worst] == 0 else [worst]
    gx = np.log10(np.maximum(x, 1e-12)) if log_x else x / max(1.0, len(x) / 10)
    gy = np.log10(y)
    named: list[int] = []
    for i in failing:
        if len(named) < 3 and all(abs(gx[i] - gx[j]) > 0.25 or abs(gy[i] - gy[j]) > 0.5 for j in named):
            named.append(i)
    return named


def _name_points(ax: Any, x: np.ndarray, y: np.ndarray, names: list[str], named: list[int], log_x: bool) -> None:
    """Write each named clip over its dot (under it where the previous name, left to right, is near), aligned
    so that it stays inside the axes: from its left end in the left third, its right end in the right third."""
    g = np.log10(np.maximum(x, 1e-12)) if log_x else x.astype(float)
    lo, hi = g.min(), g.max()
    span = max(hi - lo, 1e-9)
    below, previous = False, None
    for i in sorted(named, key=lambda i: g[i]):
        below = previous is not None and g[i] - g[previous] < 0.35 * span and not below
        where = (g[i] - lo) / span
        ha = "left" if where < 1 / 3 else "right" if where > 2 / 3 else "center"
        dx = {"left": -3, "right": 3, "center": 0}[ha]
        offset, va = ((dx, -6), "top") if below else ((dx, 6), "bottom")
        ax.annotate(names[i], (x[i], y[i]), xytext=offset, textcoords="offset points", ha=ha, va=va, fontsize=7)
        previous = i


def _clip_axis(report: ParityReport) -> tuple[np.ndarray, str, bool]:
    """(x of each clip, x label, log x): the clip's duration in seconds where every length is known, else its
    position in the report."""
    lengths = [c.num_samples for c in report.clips]
    if all(n is not None and n > 0 for n in lengths):
        return np.array(lengths, dtype=np.float64) / SAMPLE_RATE, "clip duration (s)", True
    return np.arange(len(lengths), dtype=np.float64), "clip", False


def _parity_panels(report: ParityReport, x0: float, x1: float, log_x: bool) -> tuple[_Panel, _Panel]:
    """The ``1 - cosine`` panel (a short clip's own bound below its length) and the max|diff| panel: the
    relative max|diff| unless the bounds hold only the absolute one (or a clip's scale is unknown)."""
    clips, b = report.clips, report.bounds
    segments = [(x0, x1, 1.0 - b.min_cosine)]
    if b.short_clip_samples and b.short_clip_min_cosine != b.min_cosine and log_x:
        edge = b.short_clip_samples / SAMPLE_RATE
        segments = [(x0, edge, 1.0 - b.short_clip_min_cosine), (edge, x1, 1.0 - b.min_cosine)]
    cos_bounds: list[float | None] = [1.0 - b.min_cosine_for(c.num_samples) for c in clips]
    cos_failed = np.array([c.cosine < b.min_cosine_for(c.num_samples) for c in clips], dtype=bool)
    cos_panel = _Panel("1 - cosine", [1.0 - c.cosine for c in clips], cos_failed, segments, cos_bounds)
    rels = [c.max_rel_diff for c in clips]
    if None in rels or (b.max_rel_diff is None and b.max_abs_diff is not None):
        values, bound, title = [c.max_abs_diff for c in clips], b.max_abs_diff, "max |diff|"
    else:
        values, bound, title = rels, b.max_rel_diff, "max |diff| / max |ref|"
    failed = np.array([bound is not None and not v <= bound for v in values], dtype=bool)
    segments = [] if bound is None else [(x0, x1, bound)]
    return cos_panel, _Panel(title, values, failed, segments, [bound] * len(values))


def _parity_legend(fig: Figure, kinds: dict[str, Any], any_failed: bool, bounded: bool) -> None:
    """One legend for both panels: the marker of each kind of row, the failure colour, the bound line."""
    handles = [
        Line2D([], [], marker=marker, linestyle="", color=PASS_COLOR, label=f"{label}, within bounds")
        for label, (marker, _) in kinds.items()
    ]
    if any_failed:
        handles.append(Line2D([], [], marker=SINGLE_MARKER, linestyle="", color=FAIL_COLOR, label="outside a bound"))
    if bounded:
        handles.append(Line2D([], [], label="bound", **BOUND_STYLE))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)


def plot_parity(report: ParityReport) -> Figure:
    """Each clip's ``1 - cosine`` and max|diff| against its duration, as dots on log axes, with the bounds.

    The x axis is the clip's duration in seconds where the report knows every clip's length (else the clip's
    position, short names as ticks).  The max|diff| panel draws the quantity the bounds hold: ``max|ref - cand|
    / max|ref|`` (scale-free), or the absolute max|diff| for bounds with only an absolute one.  Exact zeros sit
    in a grey band labelled "exact (0)" at the bottom; each panel's title says the worst value and its
    headroom under the bound.  Dots over their bound are red and named (else the worst clip is named); rows
    of padded batches are triangles.
    """
    if not isinstance(report, ParityReport):
        raise TypeError(
            f"plot_parity expects a ParityReport (from w2vlab._parity.compare); received {type(report).__name__}"
        )
    x, xlabel, log_x = _clip_axis(report)
    x0, x1 = (x.min() / 1.6, x.max() * 1.6) if log_x else (-0.5, len(x) - 0.5)
    names = [_short_name(c.name) for c in report.clips]
    batch = np.array([_BATCH_ROW.fullmatch(c.name) is not None for c in report.clips], dtype=bool)
    kinds = {"single clip": (SINGLE_MARKER, ~batch), "row of a padded batch": (BATCH_MARKER, batch)}
    kinds = {k: v for k, v in kinds.items() if v[1].any()}
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    panels = _parity_panels(report, x0, x1, log_x)
    for ax, panel in zip(axes, panels):
        _error_panel(ax, x, panel, names, kinds, log_x)
        ax.set(xlabel=xlabel, ylabel=panel.title, xlim=(x0, x1))
        _clip_ticks(ax, names, log_x)
    _parity_legend(fig, kinds, not report.passed, any(p.segments for p in panels))
    verdict = "PASS" if report.passed else f"FAIL ({len(report.failures)}/{len(report.clips)} clips)"
    fig.suptitle(f"{report.label + ': ' if report.label else ''}{verdict}")
    return fig


DURATION_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


def _clip_ticks(ax: Any, names: list[str], log_x: bool) -> None:
    """Durations on a log axis as plain seconds; else the clips' short names (every k-th where many)."""
    if log_x:
        ax.set_xscale("log")
        lo, hi = ax.get_xlim()
        ticks = [t for t in DURATION_TICKS if lo <= t <= hi]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        return
    step = max(1, math.ceil(len(names) / 12))
    shown = list(range(0, len(names), step))
    ax.set_xticks(shown, [names[i] for i in shown], rotation=30 if len(shown) > 4 else 0, ha="right", fontsize=7)


FORMAT_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:olive", "tab:cyan")
FORMAT_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
BOUND_LINESTYLES = ("--", ":", "-.", (0, (5, 1, 1, 1)))
LEVEL_STYLES = (":", "-.", (0, (5, 2, 1, 2, 1, 2)))


def _format_panels(reports: Mapping[str, ParityReport], x0: float, x1: float) -> list[tuple[_Panel, _Panel]]:
    """:func:`_parity_panels` of each report; where they disagree on the max|diff| quantity (some bounds hold
    only the absolute one), every report's max|diff| panel is the absolute one, with its absolute bound."""
    panels = [_parity_panels(r, x0, x1, True) for r in reports.values()]
    if len({diff.title for _, diff in panels}) == 1:
        return panels
    out = []
    for (cos, _), r in zip(panels, reports.values()):
        values, bound = [c.max_abs_diff for c in r.clips], r.bounds.max_abs_diff
        failed = np.array([bound is not None and not v <= bound for v in values], dtype=bool)
        out.append(
            (
                cos,
                _Panel("max |diff|", values, failed, [] if bound is None else [(x0, x1, bound)], [bound] * len(values)),
            )
        )
    return out


def _format_panel(
    ax: Any, xs: list[np.ndarray], panels: list[_Panel], names: list[str], levels: Mapping[str, float]
) -> list[Any]:
    """One error (``panels[i]`` of format ``names[i]``, at ``xs[i]``) per clip and format on a log axis: exact
    zeros in the labelled band, each distinct set of bound segments once (its own line style, named in the
    panel's legend), failures ringed red, ``levels`` as grey reference lines (their legend handles returned)."""
    values = [v for p in panels for v in p.values if math.isfinite(v)]
    largest = max([b for p in panels for b in p.bounds if b is not None], default=None)
    band_top, exact_y, top = _error_axis([*values, *levels.values()], largest)
    for i, (x, panel) in enumerate(zip(xs, panels)):
        y = _drawn_y(panel.values, exact_y, top)
        style = {"marker": FORMAT_MARKERS[i % len(FORMAT_MARKERS)], "color": FORMAT_COLORS[i % len(FORMAT_COLORS)]}
        ax.scatter(x, y, s=26, zorder=3, **style)
        if panel.failed.any():
            ax.scatter(x[panel.failed], y[panel.failed], s=90, facecolors="none", edgecolors=FAIL_COLOR, zorder=4)
    groups: dict[tuple, list[str]] = {}
    for name, panel in zip(names, panels):
        if panel.segments:
            groups.setdefault(tuple(panel.segments), []).append(name)
    for k, (segments, members) in enumerate(groups.items()):
        style = {**BOUND_STYLE, "linestyle": BOUND_LINESTYLES[k % len(BOUND_LINESTYLES)]}
        for s0, s1, b in segments:
            ax.hlines(max(b, band_top), s0, s1, zorder=2, **style)
        ax.plot([], [], label=f"bound of {', '.join(members)}", **style)
    if groups:
        ax.legend(loc="upper right", fontsize=7)
    handles = []
    for (label, level), style in zip(levels.items(), LEVEL_STYLES * len(levels)):
        ax.axhline(level, color="0.45", linestyle=style, linewidth=1.2, zorder=1)
        handles.append(Line2D([], [], color="0.45", linestyle=style, linewidth=1.2, label=label))
    _log_error_axis(ax, band_top, top)
    flat_v, flat_b = [v for p in panels for v in p.values], [b for p in panels for b in p.bounds]
    owner = [n for n, p in zip(names, panels) for _ in p.values][_closest(flat_v, flat_b)]
    verdict = _headroom(flat_v, flat_b)
    ax.set_title(f"{panels[0].title}\n{verdict if verdict.startswith('exact') else owner + ': ' + verdict}", fontsize=9)
    return handles


def plot_format_parity(
    reports: Mapping[str, ParityReport], title: str = "", levels: Mapping[str, float] | None = None
) -> Figure:
    """Every format's parity with eager on the same suite, in one figure: each clip's ``1 - cosine`` and
    max|diff| against its duration, one colour and marker per format, each format's bound drawn.  Any ways of
    embedding the same clips against one reference fit (notebook 03: the two modes and the naive trace).

    Formats that hold the same bound share one line (the legend names them; a labelled copy such as the int8
    one has its own, looser line).  Exact zeros sit in the grey "exact (0)" band; each format's dots are
    nudged sideways so that formats on the same value stay visible.  A dot over its own bound is ringed red.

    Args:
        reports: format name -> :class:`~w2vlab._parity.ParityReport` (e.g. an
            :class:`~w2vlab.export.ExportResult`'s reports of one mode), the clips' lengths known.
        title: the figure's title; default: how many formats are within their bounds.
        levels: label -> a ``1 - cosine`` value drawn as a grey line on that panel, for scale: e.g.
            ``{"two clips of one voice": 1 - mean_target_score}`` shows whether an error is as large as a
            change of recording.  None by default.
    """
    if not reports or not all(isinstance(r, ParityReport) for r in reports.values()):
        got = {k: type(v).__name__ for k, v in reports.items()} if isinstance(reports, Mapping) else type(reports)
        raise TypeError(f"plot_format_parity expects a non-empty mapping of name -> ParityReport; received {got}")
    axes_x = [_clip_axis(r) for r in reports.values()]
    if not all(log_x for _, _, log_x in axes_x):
        raise ValueError("plot_format_parity needs every clip's length (compare(..., num_samples=...))")
    lo = min(x.min() for x, _, _ in axes_x)
    hi = max(x.max() for x, _, _ in axes_x)
    x0, x1 = lo / 1.6, hi * 1.6
    n = len(reports)
    xs = [x * 10 ** (0.025 * (i - (n - 1) / 2)) for i, (x, _, _) in enumerate(axes_x)]  # side by side
    names = list(reports)
    panels = _format_panels(reports, x0, x1)
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    level_handles = []
    for ax, k in zip(axes, (0, 1)):
        level_handles += _format_panel(ax, xs, [p[k] for p in panels], names, dict(levels or {}) if k == 0 else {})
        ax.set(xlabel="clip duration (s)", ylabel=panels[0][k].title, xlim=(x0, x1))
        _clip_ticks(ax, [], True)
    handles = [
        (
            Line2D(
                [],
                [],
                marker=FORMAT_MARKERS[i % len(FORMAT_MARKERS)],
                linestyle="",
                color=FORMAT_COLORS[i % len(FORMAT_COLORS)],
            ),
            name,
        )
        for i, name in enumerate(names)
    ]
    if any(not r.passed for r in reports.values()):
        handles.append(
            (Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color=FAIL_COLOR), "outside its bound")
        )
    handles += [(h, h.get_label()) for h in level_handles]
    fig.legend(*zip(*handles), loc="outside lower center", ncols=min(len(handles), 5), fontsize=8)
    failing = [name for name, r in reports.items() if not r.passed]
    clips = len(next(iter(reports.values())).clips)
    verdict = f"outside their bounds: {', '.join(failing)}" if failing else "every format within its bounds"
    fig.suptitle(title or f"{n} formats vs eager on {clips} clips: {verdict}")
    return fig


def plot_embedding_scatter(reference: Any, candidate: Any, title: str = "") -> Figure:
    """Candidate vs reference embedding values with the y = x line, and the residuals.

    Args:
        reference: [N, D] (or list of [D]) embeddings of the eager model.
        candidate: [N, D] embeddings of the exported model.
    """
    worst = compare(reference, candidate).worst_max_abs_diff  # validates shapes and finiteness
    ref = as_matrix(reference, "reference").ravel()
    cand = as_matrix(candidate, "candidate").ravel()
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax, ax_res = fig.subplots(1, 2)
    ax.scatter(ref, cand, s=4, alpha=0.6, color=PASS_COLOR)
    lo, hi = float(min(ref.min(), cand.min())), float(max(ref.max(), cand.max()))
    ax.plot([lo, hi], [lo, hi], label="y = x", **BOUND_STYLE)
    ax.set(xlabel="reference (eager)", ylabel="candidate (export)", aspect="equal")
    ax.legend(loc="upper left", fontsize=8)
    ax.text(0.98, 0.02, f"max|diff| = {worst:.2e}", transform=ax.transAxes, ha="right", va="bottom")
    ax_res.scatter(ref, cand - ref, s=4, alpha=0.6, color=PASS_COLOR)
    ax_res.axhline(0.0, **BOUND_STYLE)
    ax_res.set(xlabel="reference (eager)", ylabel="candidate - reference")
    fig.suptitle(title or f"{ref.size} embedding values")
    return fig


def _frames(x: Any, side: str) -> np.ndarray:
    if hasattr(x, "shape") and len(x.shape) == 3 and x.shape[0] == 1:  # [1, T, F] batch of one
        x = x[0]
    return as_matrix(x, side, expected="[T, F] features")


def _specshow(fig: Figure, ax: Any, rows: np.ndarray, cmap: str, label: str) -> None:
    """Draw [T, F] stacked feature rows with ``librosa.display.specshow``: time in seconds and mel frequency
    (the extractor's Kaldi mel scale is HTK's) where F is a whole number of 80-bin frames, else feature bins."""
    require("librosa", needed_by="the feature figure (librosa.display.specshow)", hint="pip install 'w2vlab[lab]'")
    from librosa.display import specshow  # the [lab] extra's; only this figure needs it

    cfg = FeatureConfig()
    stride, rem = divmod(rows.shape[1], cfg.num_mel_bins)
    if rem == 0 and stride >= 1:
        frames = rows.reshape(rows.shape[0] * stride, cfg.num_mel_bins)  # (T * stride, 80): one 10 ms frame a row
        kwargs = {"y_axis": "mel", "fmin": cfg.low_freq, "fmax": cfg.high_freq, "htk": True}
        mesh = specshow(frames.T, sr=SAMPLE_RATE, hop_length=cfg.hop_length, x_axis="time", ax=ax, cmap=cmap, **kwargs)
        ax.set_ylabel("mel frequency (Hz)")
    else:
        mesh = specshow(rows.T, sr=SAMPLE_RATE, hop_length=cfg.hop_length * 2, x_axis="time", ax=ax, cmap=cmap)
        ax.set_ylabel("feature bin")
    ax.set_xlabel("time (s)")
    fig.colorbar(mesh, ax=ax, label=label)


def plot_feature_difference(reference_feats: Any, candidate_feats: Any, title: str = "") -> Figure:
    """The reference features as a log-mel spectrogram, and ``|reference - candidate|`` on the same axes.

    Both panels are drawn with ``librosa.display.specshow``: time in seconds, frequency on the mel scale
    (the stacked rows of W2V-BERT's extractor unstacked into their 10 ms, 80-bin frames).

    Args:
        reference_feats: [T, F] (or [1, T, F]) features, e.g. the HF extractor's [T, 160].
        candidate_feats: features of the same shape, e.g. the torch frontend's.
    """
    ref = _frames(reference_feats, "reference_feats")
    cand = _frames(candidate_feats, "candidate_feats")
    if ref.shape != cand.shape:
        raise ValueError(
            f"reference_feats has shape {tuple(ref.shape)} but candidate_feats has shape {tuple(cand.shape)}; "
            "both must be the same [T, F]"
        )
    diff = np.abs(ref - cand)  # (T, F)
    t, f = np.unravel_index(int(np.argmax(diff)), diff.shape)
    fig = Figure(figsize=(9, 6), layout="constrained")
    ax_ref, ax_diff = fig.subplots(2, 1, sharex=True)
    _specshow(fig, ax_ref, ref, "magma", "normalised log-mel")
    ax_ref.set_title("reference features (what the model reads)", fontsize=10)
    _specshow(fig, ax_diff, diff, "viridis", "|diff|")
    ax_diff.set_title(f"max|diff| = {diff.max():.2e} at frame {t}, bin {f}", fontsize=10)
    fig.suptitle(title or "features: reference vs candidate")
    return fig


def plot_latency(timings: Mapping[str, float], baseline: str | None = None, unit: str = "ms") -> Figure:
    """Bar chart of latencies, each bar labelled with its value and its ratio to ``baseline``."""
    if not timings:
        raise ValueError("plot_latency needs at least one timing; received an empty mapping")
    if baseline is not None and baseline not in timings:
        raise ValueError(f"baseline {baseline!r} is not one of the timings {list(timings)}")
    names, values = list(timings), [float(v) for v in timings.values()]
    base = timings[baseline] if baseline is not None else None
    if base is not None and not base > 0:
        raise ValueError(f"baseline {baseline!r} has latency {base}; expected a positive number")
    fig = Figure(figsize=(max(5.0, 1.2 * len(names) + 2), 3.8), layout="constrained")
    ax = fig.subplots()
    colors = ["tab:gray" if n == baseline else PASS_COLOR for n in names]
    bars = ax.bar(names, values, color=colors)
    labels = [f"{v:.3g} {unit}" + (f"\n{v / base:.2f}x" if base is not None else "") for v in values]
    ax.bar_label(bars, labels=labels, padding=2, fontsize=8)
    ax.set_ylim(0, max(values) * 1.25 if max(values) > 0 else 1)
    ax.set_ylabel(f"latency ({unit})")
    ax.set_xlabel("what was timed" + (" (grey: the baseline)" if baseline is not None else ""))
    ax.set_title(f"latency (ratio to {baseline})" if baseline is not None else "latency")
    return fig


def _similarity(embeddings: Any, names: Sequence[str]) -> np.ndarray:
    """[N, N] cosine of every pair of the [N, D] ``embeddings`` (one name per row; no all-zero row)."""
    emb = as_matrix(embeddings, "embeddings")
    if len(names) != emb.shape[0]:
        raise ValueError(f"received {len(names)} names for {emb.shape[0]} embeddings; expected one name per row")
    norms = np.linalg.norm(emb, axis=1)  # (N,)
    if (norms == 0).any():
        zero_rows = np.flatnonzero(norms == 0).tolist()
        raise ValueError(f"embeddings rows {zero_rows} are all zero; their cosine similarity is undefined")
    n = len(names)
    return cosine_rows(np.repeat(emb, n, axis=0), np.tile(emb, (n, 1))).reshape(n, n)  # (N, N)


def _speaker_blocks(speakers: Sequence[str]) -> list[tuple[str, int, int]]:
    """(speaker, first, end) of each run of equal speakers, in order."""
    blocks: list[tuple[str, int, int]] = []
    for i, spk in enumerate(speakers):
        if blocks and blocks[-1][0] == spk:
            blocks[-1] = (spk, blocks[-1][1], i + 1)
        else:
            blocks.append((spk, i, i + 1))
    return blocks


def plot_similarity_matrix(
    embeddings: Any, names: Sequence[str], title: str = "", speakers: Sequence[str] | None = None
) -> Figure:
    """Cosine similarity between every pair of [N, D] embeddings, clips grouped by speaker.

    With ``speakers`` (one per clip), clips are sorted by speaker, each speaker's block is outlined and
    named on both axes, and the title gives the mean same-speaker and different-speaker cosine: a speaker
    model shows bright blocks on the diagonal.  The colour scale spans the off-diagonal values (the diagonal,
    each clip with itself, is grey), so differences of 0.01 stay visible; values are written in the cells
    for up to 12 clips.
    """
    sim = _similarity(embeddings, names)
    n = len(names)
    if speakers is not None and len(speakers) != n:
        raise ValueError(f"received {len(speakers)} speakers for {n} embeddings; expected one speaker per row")
    order = sorted(range(n), key=lambda i: (str(speakers[i]), str(names[i]))) if speakers is not None else range(n)
    order = list(order)
    sim = sim[np.ix_(order, order)]
    off = sim[~np.eye(n, dtype=bool)] if n > 1 else sim.ravel()
    shown = np.ma.masked_array(sim, mask=np.eye(n, dtype=bool))
    side = min(11.0, max(4.5, 0.3 * n + 2.5))
    fig = Figure(figsize=(side + 1.5, side), layout="constrained")
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")
    image = ax.imshow(shown, vmin=float(off.min()), vmax=float(off.max()), cmap=cmap, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="cosine (colour range: the off-diagonal values)")
    if n <= 12:
        for i, j in np.ndindex(n, n):
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=7, color="black" if i == j else "w")
    head = title or "cosine similarity"
    if speakers is None:
        labels = [_short_name(str(names[i])) for i in order]
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
        ax.set(xlabel="clip", ylabel="clip")
    else:
        head += _draw_speakers(ax, [str(speakers[i]) for i in order], sim)
    ax.set_title(head, fontsize=10)
    return fig


def _draw_speakers(ax: Any, speakers: list[str], sim: np.ndarray) -> str:
    """Outline each speaker's block, name it on both axes; returns the same/different-speaker means in words."""
    blocks = _speaker_blocks(speakers)
    for _, first, _ in blocks[1:]:
        ax.axhline(first - 0.5, color="white", linewidth=1.5)
        ax.axvline(first - 0.5, color="white", linewidth=1.5)
    centres = [(first + end - 1) / 2 for _, first, end in blocks]
    ax.set_xticks(centres, [spk for spk, _, _ in blocks], rotation=90 if len(blocks) > 8 else 0, fontsize=8)
    ax.set_yticks(centres, [spk for spk, _, _ in blocks], fontsize=8)
    ax.set(xlabel="speaker (clips sorted by speaker)", ylabel="speaker")
    labels = np.array(speakers)
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(speakers), dtype=bool)
    if not (same & off).any() or not (~same).any():
        return ""
    return f"\nmean cosine: same speaker {sim[same & off].mean():.3f}, different speakers {sim[~same].mean():.3f}"


def plot_layer_widths(widths: Mapping[str, Sequence[int | None]], title: str = "") -> Figure:
    """Per-layer widths of a (pruned) encoder, one panel per kind of width.

    Widths differ by orders of magnitude (16 heads vs 4096 FFN units), so each kind gets
    its own panel over a shared layer axis.  ``None`` (block absent) is drawn as 0.

    Args:
        widths: e.g. ``{"heads": [...], "ffn1": [...], "ffn2": [...], "conv": [...]}``,
            every list ``num_hidden_layers`` long.
    """
    if not widths:
        raise ValueError("plot_layer_widths needs at least one series; received an empty mapping")
    lengths = {k: len(v) for k, v in widths.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"every series must have one width per layer; received lengths {lengths}")
    n_layers = next(iter(lengths.values()))
    fig = Figure(figsize=(max(6.0, 0.3 * n_layers + 2), 1.0 + 1.6 * len(widths)), layout="constrained")
    axes = fig.subplots(len(widths), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, series) in zip(axes, widths.items()):
        values = [0 if w is None else w for w in series]
        ax.bar(range(n_layers), values, color=PASS_COLOR)
        ax.set_ylabel(name)
        ax.set_ylim(0, max(max(values), 1) * 1.15)
    axes[-1].set_xlabel("layer")
    axes[-1].set_xticks(range(n_layers))
    fig.suptitle(title or "per-layer widths")
    return fig


_TARGET = re.compile(r"\s*([A-Za-z ]*?)\s*(<=|>=|<|>)\s*([0-9.]+(?:e-?\d+)?)")
FORMAT_COLOR = "0.6"  # formats have no target each: grey, so colour keeps meaning "target met or missed"


def _target(text: str) -> tuple[str | None, float | None]:
    """("lower" / "higher" / None, the target value or None) read from a row's target in words: ``"<= 1.2 ..."``
    is lower-is-better at 1.2; ``"overhead <= 0.05"`` lower-is-better of another quantity (no value drawn)."""
    match = _TARGET.match(text)
    if not match:
        return None, None
    prefix, op, value = match.groups()
    return ("lower" if op.startswith("<") else "higher"), (None if prefix else float(value))


def _ratio_panel(ax: Any, rows: list[tuple[str, MetricRow]], kind: str) -> None:
    """Horizontal bars of each row's ratio on a log axis, coloured by target met, each row's target a black tick."""
    y = np.arange(len(rows))
    ratios = [row[RATIO] for _, row in rows]
    ax.barh(y, ratios, color=[PASS_COLOR if row[MET] else FAIL_COLOR for _, row in rows], height=0.6)
    targets = [_target(str(row.get(TARGET, "")))[1] for _, row in rows]
    for i, (ratio, target) in enumerate(zip(ratios, targets)):
        ax.annotate(f" {ratio:.2f}", (ratio, i), va="center", fontsize=8)
        if target is not None:
            ax.plot([target, target], [i - 0.4, i + 0.4], color="black", linewidth=2)
    ax.axvline(1.0, color="0.6", linewidth=0.8)
    values = [*ratios, *(t for t in targets if t is not None)]
    ax.set_xscale("log")
    ax.set_xlim(min(values) / 2, max(values) * 3)
    ax.set_yticks(y, [name for name, _ in rows], fontsize=8)
    ax.invert_yaxis()
    better = "lower is better: latency and memory ratios" if kind == "lower" else "higher is better: speed-ups"
    ax.set_title(better, fontsize=10)
    ax.set(xlabel="ratio (log scale)", ylabel="metric")


def _bench_legend(fig: Figure) -> None:
    handles = [
        Patch(color=PASS_COLOR, label="target met"),
        Patch(color=FAIL_COLOR, label="target missed"),
        Patch(color=FORMAT_COLOR, label="no target of its own"),
        Line2D([], [], color="black", linewidth=2, label="the row's target"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8)


def plot_bench(result: BenchResult | Mapping[str, Any]) -> Figure:
    """The benchmark's JSON (``python -m w2vlab.bench --json``; rows typed in :mod:`w2vlab._benchrow`) at a glance.

    Left, split by kind: the ratios whose target is an upper bound (latency and memory: lower is better),
    then those whose target is a lower bound (speed-ups: higher is better), each bar coloured by whether its
    target is met and the target drawn as a black tick on its row.  Right: each format's latency relative to
    eager on the same clip (the int8 copy hatched: it is not an exact copy), then the reduced-precision
    candidates where the JSON has them (``reduced_precision_10s``), with the 0.5x and 0.3x targets.  Rows
    whose target has no direction are named at the bottom.
    """
    metrics = result.get(METRICS)
    if not isinstance(metrics, Mapping) or not metrics:
        raise ValueError(f"plot_bench expects the benchmark's JSON object with a non-empty {METRICS!r} mapping")
    rows = [(name, row) for name, row in metrics.items() if isinstance(row, Mapping) and RATIO in row]
    groups = {kind: [r for r in rows if _target(str(r[1].get(TARGET, "")))[0] == kind] for kind in ("lower", "higher")}
    undirected = [name for name, row in rows if _target(str(row.get(TARGET, "")))[0] is None]
    formats: Mapping[str, FormatRow] = metrics.get(FORMATS_ROW, {}).get(FORMATS, {})
    shown = {k: v for k, v in groups.items() if v}
    fig = Figure(figsize=(15, max(5.0, 0.32 * len(rows) + 3.0)), layout="constrained")
    grid = fig.add_gridspec(max(1, len(shown)), 2, height_ratios=[len(v) + 1.5 for v in shown.values()] or [1])
    for i, (kind, group) in enumerate(shown.items()):
        _ratio_panel(fig.add_subplot(grid[i, 0]), group, kind)
    _latency_panel(fig.add_subplot(grid[:, 1]), formats, metrics.get(PRECISION_ROW, {}).get(RUNS, {}))
    _bench_legend(fig)
    note = f"; not drawn (no target direction): {', '.join(undirected)}" if undirected else ""
    fig.suptitle(f"benchmark --size {result.get(SIZE)}, {result.get(THREADS)} threads{note}", fontsize=10)
    return fig


def _latency_panel(ax: Any, formats: Mapping[str, FormatRow], candidates: Mapping[str, FormatRow]) -> None:
    """Grey bars of latency / eager: each format, then each reduced-precision candidate not already a format
    (after a divider), int8 hatched; the 0.5x and 0.3x targets drawn."""
    extra = {name: row for name, row in candidates.items() if name not in formats}
    rows = {**formats, **extra}
    names = list(rows)
    bars = ax.bar(range(len(names)), [rows[n][RATIO_VS_EAGER] for n in names], color=FORMAT_COLOR)
    for bar, name in zip(bars, names):
        if "int8" in name:
            bar.set_hatch("//")
    cosine = {n: rows[n][WORST_COSINE] if WORST_COSINE in rows[n] else rows[n][COSINE] for n in names}
    ax.bar_label(bars, labels=[f"{rows[n][RATIO_VS_EAGER]:.2f}x\ncos {cosine[n]:.5f}" for n in names], fontsize=7)
    ax.axhline(1.0, color="0.6", linewidth=0.8)
    ax.axhline(0.5, label="target for the fastest: 0.5x", **BOUND_STYLE)
    if extra:
        ax.axhline(0.3, label="reduced precision: 0.3x", color="black", linestyle=":", linewidth=1.0)
        ax.axvline(len(formats) - 0.5, color="0.3", linewidth=0.8)
        ax.text(len(formats) - 0.4, 0.98, "reduced-precision candidates", transform=ax.get_xaxis_transform(), va="top")
    ax.set_ylim(0, max([1.2, *(rows[n][RATIO_VS_EAGER] * 1.3 for n in names)]))
    ax.set_xticks(
        range(len(names)), names, rotation=30 if len(names) > 5 else 0, ha="right" if len(names) > 5 else "center"
    )
    ax.set_ylabel("latency / eager, one 10 s clip")
    ax.set_xlabel("format (hatched: int8, not an exact copy)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("each format's latency against eager (lower is better)", fontsize=10)


DET_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99)
# The trial figure's colours: one meaning each.  Targets and non-targets (distributions, differences);
# the reference and candidate sides are told apart by line style (solid, dashed), thresholds by grey styles.
TARGET_COLOR, NONTARGET_COLOR = "tab:blue", "tab:orange"
SIDE_STYLES = {"reference": "-", "candidate": "--"}
DET_TICKS_WIDE = (0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99)  # the whole square: fewer, so they do not touch
POINT_STYLES = (
    {"color": "black", "linestyle": "--"},
    {"color": "0.35", "linestyle": ":"},
    {"color": "0.55", "linestyle": "-."},
)


def _probit(p: Any, floor: float) -> np.ndarray:
    """Normal deviate of each probability, clipped to [floor, 1 - floor] (0 and 1 are infinite)."""
    inv = NormalDist().inv_cdf
    return np.array([inv(min(max(float(v), floor), 1.0 - floor)) for v in np.atleast_1d(p)])


def _det_panel(ax: Any, comparison: TrialComparison) -> None:
    """DET curves of both sides on normal-deviate axes, each EER marked."""
    trials = comparison.reference.trials
    floor = max(1e-4, 0.5 / max(trials.n_target, trials.n_nontarget))  # half the finest rate the trials resolve
    eer_point = comparison.points[0]
    top = 0.5 if max(eer_point.reference, eer_point.candidate) <= 0.25 else 1.0 - floor  # DET's usual corner if it fits
    for side, scores, color, value in (
        ("reference", comparison.reference, "black", eer_point.reference),
        ("candidate", comparison.candidate, "tab:purple", eer_point.candidate),
    ):
        fpr, fnr, _ = det_curve(scores.scores, trials.labels)
        style = SIDE_STYLES[side]
        ax.plot(_probit(fpr, floor), _probit(fnr, floor), style, color=color, label=f"{side}: EER {100 * value:.2f}%")
        ax.plot(_probit(value, floor), _probit(value, floor), "o", color=color, markerfacecolor="none")
    ticks = [t for t in (DET_TICKS if top <= 0.5 else DET_TICKS_WIDE) if floor <= t <= top]
    ax.set_xticks(_probit(ticks, floor), [f"{100 * t:g}" for t in ticks])
    ax.set_yticks(_probit(ticks, floor), [f"{100 * t:g}" for t in ticks])
    lo, hi = _probit(floor, floor)[0], _probit(top, floor)[0]
    ax.plot([lo, hi], [lo, hi], color="tab:gray", linewidth=0.5)  # fnr == fpr: where the EER lies
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="false-accept rate (%)", ylabel="miss rate (%)", aspect="equal")
    ax.legend(loc="lower left", fontsize=8)  # the corner no DET curve reaches
    ax.set_title("DET")


def _distribution_panel(ax: Any, comparison: TrialComparison) -> None:
    """Histograms of target and non-target scores: the reference filled, the candidate as an outline; the
    reference's thresholds as vertical lines.  Each kind is normalised to its own area (a list has far more
    non-target than target trials), so both humps show.  Separated humps are a model that tells voices apart."""
    target = comparison.reference.trials.labels == 1
    ref, cand = comparison.reference.scores, comparison.candidate.scores
    edges = np.histogram_bin_edges(np.concatenate([ref, cand]), bins=min(60, max(10, len(ref) // 8)))
    for mask, color, kind in ((target, TARGET_COLOR, "target"), (~target, NONTARGET_COLOR, "non-target")):
        n = f"{kind} ({int(mask.sum())})"
        ax.hist(ref[mask], bins=edges, density=True, color=color, alpha=0.45, label=f"{n}, reference")
        ax.hist(
            cand[mask], bins=edges, density=True, color=color, histtype="step", linestyle="--", label=f"{n}, candidate"
        )
    for point, style in zip(comparison.points, POINT_STYLES * len(comparison.points)):
        ax.axvline(point.threshold, linewidth=1.0, label=f"{point.name} threshold", **style)
    ax.set(xlabel="score", ylabel="density (area 1 per kind)")
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title("score distributions", fontsize=10)


def _difference_panel(ax: Any, comparison: TrialComparison) -> None:
    """Candidate minus reference score per trial against the reference score; thresholds as vertical lines,
    trials whose decision flips at one circled red."""
    target = comparison.reference.trials.labels == 1
    ref, cand = comparison.reference.scores, comparison.candidate.scores
    diff = cand - ref
    ax.scatter(ref[~target], diff[~target], s=10, marker="x", color=NONTARGET_COLOR, label="non-target trial")
    ax.scatter(ref[target], diff[target], s=10, marker="o", color=TARGET_COLOR, label="target trial")
    ax.axhline(0.0, color="0.6", linewidth=0.8)
    for point, style in zip(comparison.points, POINT_STYLES * len(comparison.points)):
        ax.axvline(point.threshold, linewidth=1.0, label=f"{point.name}: {point.n_flips} flips", **style)
    flipped = {(f.enroll, f.test) for p in comparison.points for f in p.flips}
    trials = comparison.reference.trials
    mask = np.array([(e, t) in flipped for e, t in zip(trials.enroll, trials.test)], dtype=bool)
    if mask.any():
        ax.scatter(ref[mask], diff[mask], s=70, facecolors="none", edgecolors=FAIL_COLOR, label="flipped decision")
    if not diff.any():
        ax.set_ylim(-1.0, 1.0)  # identical scores: a flat line at 0, not an autoscaled nothing
    ax.set(xlabel="reference score", ylabel="candidate - reference score")
    ax.legend(loc="best", fontsize=7)
    ax.set_title(f"|score diff| max {comparison.max_abs_diff:.1e}, p99 {comparison.p99_abs_diff:.1e}", fontsize=10)


def plot_trial_parity(
    comparison: TrialComparison | TrialScores, candidate: TrialScores | None = None, title: str = ""
) -> Figure:
    """Decision-level parity of two scorings of the same trials, in three panels.

    Left: the score distributions of target and non-target trials (reference filled, candidate outlined),
    with the reference's thresholds (EER, minDCF).  Middle: each trial's score difference (candidate -
    reference) against its reference score; a trial near a threshold with a large difference is one that can
    flip, and flipped trials are circled red.  Right: DET curves of both sides on normal-deviate axes, each
    EER marked.  Blue is a target trial and orange a non-target one throughout.

    Args:
        comparison: a :class:`~w2vlab.corpus._trials.TrialComparison`, or the reference
            :class:`~w2vlab.corpus._trials.TrialScores` with ``candidate`` the other side's.
    """
    if isinstance(comparison, TrialScores) and isinstance(candidate, TrialScores):
        comparison = compare_trials(comparison, candidate)
    if not isinstance(comparison, TrialComparison):
        raise TypeError(
            "plot_trial_parity expects a TrialComparison (w2vlab.corpus._trials.compare_trials), or two "
            f"TrialScores; received {type(comparison).__name__} and {type(candidate).__name__}"
        )
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    ax_dist, ax_diff, ax_det = fig.subplots(1, 3, width_ratios=[1.2, 1.2, 1])
    _distribution_panel(ax_dist, comparison)
    _difference_panel(ax_diff, comparison)
    _det_panel(ax_det, comparison)
    trials = comparison.reference.trials
    fig.suptitle(title or comparison.label or f"{len(trials)} trials, {comparison.n_flips} flipped decisions")
    return fig
