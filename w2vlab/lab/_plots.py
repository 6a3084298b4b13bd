"""Figures for parity reports, features, latency, pruned layer widths and trial decisions.

Every function only draws: it takes numbers (usually a :class:`~w2vlab._parity.ParityReport`)
and returns a :class:`matplotlib.figure.Figure`.  Figures are built without pyplot, so no
global state, no window and no ``plt.show()``: they work headless (Agg) and render in a
notebook with ``display(fig)``; ``fig.savefig(path)`` writes them to disk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from w2vlab._contract import require

require("matplotlib", needed_by="w2vlab's figures", hint="pip install 'w2vlab[lab]'")
from matplotlib.figure import Figure  # noqa: E402  (after the check, which names the extra)

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
from w2vlab._parity import ParityReport, as_matrix, compare, cosine_rows  # noqa: E402
from w2vlab.corpus._trials import TrialComparison, TrialScores, compare_trials, det_curve  # noqa: E402

PASS_COLOR = "tab:blue"
FAIL_COLOR = "tab:red"
BOUND_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.0}


def _log_floor(values: Sequence[float]) -> float:
    """A decade below the smallest positive value: where exact zeros are drawn on a log axis."""
    positive = [v for v in values if v > 0]
    return 10.0 ** (math.floor(math.log10(min(positive))) - 1) if positive else 1e-12


def _parity_panel(
    ax: Any, names: list[str], values: list[float], failed: list[bool], bound: float | None, ylabel: str
) -> None:
    """One panel of bars on a log axis, with ``bound`` as a dashed line (None: no bound)."""
    finite = [v for v in (*values, bound) if v is not None and math.isfinite(v)]
    floor = _log_floor(finite)
    x = np.arange(len(values))
    colors = [FAIL_COLOR if f else PASS_COLOR for f in failed]
    ax.bar(x, [max(v, floor) for v in values], color=colors)
    for i, v in enumerate(values):
        if v == 0:
            ax.annotate("0", (i, floor), ha="center", va="bottom", fontsize=8)
    if bound is not None and 0 < bound < math.inf:
        ax.axhline(bound, label=f"bound {bound:.1e}", **BOUND_STYLE)
        ax.legend(loc="upper right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, max([*finite, floor]) * 20)
    slant = len(names) > 6 or max(map(len, names)) > 12  # long or many names would overlap
    ax.set_xticks(x, names, rotation=45 if slant else 0, ha="right" if slant else "center")
    ax.set_ylabel(ylabel)


def _max_diff_panel(report: ParityReport) -> tuple[list[float], float | None, str]:
    """(per-clip values, bound or None, y label) of the max|diff| panel: the relative max|diff| unless the
    bounds hold only the absolute one (or a clip's scale is unknown)."""
    b, rels = report.bounds, [c.max_rel_diff for c in report.clips]
    if None in rels or (b.max_rel_diff is None and b.max_abs_diff is not None):
        return [c.max_abs_diff for c in report.clips], b.max_abs_diff, "max |diff|"
    return rels, b.max_rel_diff, "max |diff| / max |ref|"


def plot_parity(report: ParityReport) -> Figure:
    """Per-clip ``1 - cosine`` and ``max|diff|`` bars against the report's bounds.

    The max|diff| panel draws the quantity the bounds hold: ``max|ref - cand| / max|ref|`` (scale-free),
    or the absolute max|diff| for bounds with only an absolute one.  Bars over their panel's bound (on
    the cosine panel, a short clip's own bound) are red; zeros are drawn at a floor a decade below the
    smallest positive value and marked "0"; names of failing clips are red on both panels.
    """
    if not isinstance(report, ParityReport):
        raise TypeError(
            f"plot_parity expects a ParityReport (from w2vlab._parity.compare); received {type(report).__name__}"
        )
    clips, b = report.clips, report.bounds
    names = [c.name for c in clips]
    fig = Figure(figsize=(min(16.0, max(8.0, 0.5 * len(names) + 4)), 3.6), layout="constrained")
    ax_cos, ax_max = fig.subplots(1, 2)
    cos_failed = [c.cosine < b.min_cosine_for(c.num_samples) for c in clips]  # short clips: their own bound
    values, bound, ylabel = _max_diff_panel(report)
    max_failed = [bound is not None and v > bound for v in values]
    _parity_panel(ax_cos, names, [1.0 - c.cosine for c in clips], cos_failed, 1.0 - b.min_cosine, "1 - cosine")
    _parity_panel(ax_max, names, values, max_failed, bound, ylabel)
    failing = set(report.failures)
    for ax in (ax_cos, ax_max):
        for tick in ax.get_xticklabels():
            if tick.get_text() in failing:
                tick.set_color(FAIL_COLOR)
    verdict = "PASS" if report.passed else f"FAIL ({len(failing)}/{len(names)} clips)"
    fig.suptitle(f"{report.label + ': ' if report.label else ''}{verdict}")
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


def plot_feature_difference(reference_feats: Any, candidate_feats: Any, title: str = "") -> Figure:
    """Heatmap of ``|reference - candidate|`` over frames and feature bins.

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
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(diff.T, origin="lower", aspect="auto", interpolation="nearest", cmap="magma")
    fig.colorbar(image, ax=ax, label="|diff|")
    ax.set(xlabel="frame", ylabel="feature bin")
    head = f"{title}: " if title else ""
    ax.set_title(f"{head}max|diff| = {diff.max():.2e} at frame {t}, bin {f}")
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
    ax.set_title(f"latency (ratio to {baseline})" if baseline is not None else "latency")
    return fig


def plot_similarity_matrix(embeddings: Any, names: Sequence[str], title: str = "") -> Figure:
    """Cosine similarity between every pair of [N, D] embeddings, values written in the cells."""
    emb = as_matrix(embeddings, "embeddings")
    if len(names) != emb.shape[0]:
        raise ValueError(f"received {len(names)} names for {emb.shape[0]} embeddings; expected one name per row")
    norms = np.linalg.norm(emb, axis=1)  # (N,)
    if (norms == 0).any():
        zero_rows = np.flatnonzero(norms == 0).tolist()
        raise ValueError(f"embeddings rows {zero_rows} are all zero; their cosine similarity is undefined")
    n = len(names)
    sim = cosine_rows(np.repeat(emb, n, axis=0), np.tile(emb, (n, 1))).reshape(n, n)  # (N, N)
    fig = Figure(figsize=(1.0 + 0.6 * n + 1.5, 1.0 + 0.6 * n), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(sim, vmin=-1.0, vmax=1.0, cmap="RdBu_r")
    fig.colorbar(image, ax=ax, label="cosine")
    for i in range(n):
        for j in range(n):
            color = "white" if abs(sim[i, j]) > 0.6 else "black"
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(n), list(names), rotation=45, ha="right")
    ax.set_yticks(range(n), list(names))
    ax.set_title(title or "cosine similarity")
    return fig


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


def plot_bench(result: BenchResult | Mapping[str, Any]) -> Figure:
    """The benchmark's JSON (``python -m w2vlab.bench --json``; rows typed in :mod:`w2vlab._benchrow`) at a glance.

    Left: every metric that has a ratio, coloured by whether its target is met, the target
    written beside it.  Right: each format's latency relative to eager on the same clip (the
    int8 copy hatched: it is not an exact copy), with the 0.5x target drawn, then the
    reduced-precision candidates where the JSON has them (``reduced_precision_10s``; the
    worst cosine over their parity clips).
    """
    metrics = result.get(METRICS)
    if not isinstance(metrics, Mapping) or not metrics:
        raise ValueError(f"plot_bench expects the benchmark's JSON object with a non-empty {METRICS!r} mapping")
    rows: list[tuple[str, MetricRow]] = [
        (name, row) for name, row in metrics.items() if isinstance(row, Mapping) and RATIO in row
    ]
    formats: Mapping[str, FormatRow] = metrics.get(FORMATS_ROW, {}).get(FORMATS, {})
    fig = Figure(figsize=(18, max(4.5, 0.5 * len(rows) + 1.5)), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1, 1])  # the left's targets are written past its bars
    y = np.arange(len(rows))
    ratios = [row[RATIO] for _, row in rows]
    left.barh(y, ratios, color=[PASS_COLOR if row[MET] else FAIL_COLOR for _, row in rows])
    for i, (_, row) in enumerate(rows):
        left.annotate(f" {row[RATIO]:.2f}  (target {row[TARGET]})", (row[RATIO], i), va="center", fontsize=8)
    left.axvline(1.0, **BOUND_STYLE)
    left.set_xscale("log")
    left.set_xlim(min(0.05, *(r / 2 for r in ratios)), max(100.0, *(r * 40 for r in ratios)))
    left.set_yticks(y, [name for name, _ in rows])
    left.invert_yaxis()
    left.set_xlabel("ratio (as defined by each metric; blue: target met)")
    left.set_title(f"w2vlab.bench._harness --size {result.get(SIZE)}, {result.get(THREADS)} threads")
    _latency_panel(right, formats, metrics.get(PRECISION_ROW, {}).get(RUNS, {}))
    return fig


def _latency_panel(ax: Any, formats: Mapping[str, FormatRow], candidates: Mapping[str, FormatRow]) -> None:
    """Bars of latency / eager: each format, then each reduced-precision candidate not already a format
    (orange), int8 hatched; the 0.5x and 0.3x targets drawn."""
    rows = {**formats, **{name: row for name, row in candidates.items() if name not in formats}}
    names = list(rows)
    colors = [PASS_COLOR if name in formats else "tab:orange" for name in names]
    bars = ax.bar(names, [rows[n][RATIO_VS_EAGER] for n in names], color=colors)
    for bar, name in zip(bars, names):
        if "int8" in name:
            bar.set_hatch("//")
    cosine = {
        n: rows[n][WORST_COSINE] if WORST_COSINE in rows[n] else rows[n][COSINE] for n in names
    }  # candidates: per clip
    ax.bar_label(bars, labels=[f"{rows[n][RATIO_VS_EAGER]:.2f}x\ncos {cosine[n]:.5f}" for n in names], fontsize=8)
    ax.axhline(1.0, color="tab:gray", linewidth=1.0)
    ax.axhline(0.5, label="target for the fastest: 0.5x", **BOUND_STYLE)
    if candidates:
        ax.axhline(0.3, label="reduced precision: 0.3x", color="tab:orange", linestyle=":", linewidth=1.0)
    ax.set_ylim(0, max([1.2, *(rows[n][RATIO_VS_EAGER] * 1.3 for n in names)]))
    ax.set_ylabel("latency / eager, one 10 s clip")
    ax.tick_params(axis="x", labelrotation=30 if len(names) > 5 else 0)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(
        "formats (blue) and reduced-precision candidates (orange) vs eager; hatched: int8"
        if candidates
        else "formats vs eager (hatched: int8, not exact)",
        fontsize=9,
    )


DET_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99)
POINT_STYLES = (
    {"color": "black", "linestyle": "--"},
    {"color": "tab:green", "linestyle": ":"},
    {"color": "tab:purple", "linestyle": "-."},
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
        ("reference", comparison.reference, PASS_COLOR, eer_point.reference),
        ("candidate", comparison.candidate, FAIL_COLOR, eer_point.candidate),
    ):
        fpr, fnr, _ = det_curve(scores.scores, trials.labels)
        style = "-" if side == "reference" else "--"
        ax.plot(_probit(fpr, floor), _probit(fnr, floor), style, color=color, label=f"{side}: EER {100 * value:.2f}%")
        ax.plot(_probit(value, floor), _probit(value, floor), "o", color=color, markerfacecolor="none")
    ticks = [t for t in DET_TICKS if floor <= t <= top]
    ax.set_xticks(_probit(ticks, floor), [f"{100 * t:g}" for t in ticks])
    ax.set_yticks(_probit(ticks, floor), [f"{100 * t:g}" for t in ticks])
    lo, hi = _probit(floor, floor)[0], _probit(top, floor)[0]
    ax.plot([lo, hi], [lo, hi], color="tab:gray", linewidth=0.5)  # fnr == fpr: where the EER lies
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="false-accept rate (%)", ylabel="miss rate (%)", aspect="equal")
    ax.legend(loc="lower left", fontsize=8)  # the corner no DET curve reaches
    ax.set_title("DET")


def plot_trial_parity(
    comparison: TrialComparison | TrialScores, candidate: TrialScores | None = None, title: str = ""
) -> Figure:
    """Decision-level parity of two scorings of the same trials.

    Left: candidate vs reference score per trial (targets and non-targets apart, flipped trials
    circled red), the y = x line, and the reference's thresholds (EER, minDCF) as a cross each:
    a trial off the diagonal quadrants of a cross flips there.  Right: DET curves of both sides
    on normal-deviate axes, each EER marked.

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
    ref, cand = comparison.reference.scores, comparison.candidate.scores
    target = comparison.reference.trials.labels == 1
    fig = Figure(figsize=(11, 5), layout="constrained")
    ax, ax_det = fig.subplots(1, 2)
    ax.scatter(ref[~target], cand[~target], s=8, alpha=0.6, color="tab:gray", label="non-target")
    ax.scatter(ref[target], cand[target], s=8, alpha=0.6, color=PASS_COLOR, label="target")
    lo, hi = float(min(ref.min(), cand.min())), float(max(ref.max(), cand.max()))
    ax.plot([lo, hi], [lo, hi], color="tab:gray", linewidth=0.8, label="y = x")
    for point, style in zip(comparison.points, POINT_STYLES * len(comparison.points)):
        ax.axvline(point.threshold, linewidth=1.0, label=f"{point.name} threshold ({point.n_flips} flips)", **style)
        ax.axhline(point.threshold, linewidth=1.0, **style)
    flipped = {(f.enroll, f.test) for p in comparison.points for f in p.flips}
    trials = comparison.reference.trials
    mask = np.array([(e, t) in flipped for e, t in zip(trials.enroll, trials.test)], dtype=bool)
    if mask.any():
        ax.scatter(ref[mask], cand[mask], s=60, facecolors="none", edgecolors=FAIL_COLOR, label="flipped")
    ax.set(xlabel="reference score", ylabel="candidate score", aspect="equal")
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(f"|score diff| max {comparison.max_abs_diff:.1e}, p99 {comparison.p99_abs_diff:.1e}")
    _det_panel(ax_det, comparison)
    fig.suptitle(title or comparison.label or f"{len(trials)} trials, {comparison.n_flips} flipped decisions")
    return fig
