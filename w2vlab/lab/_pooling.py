"""The pooling-choice figure: each choice's error against a toolkit's own extraction, odd and even clips.

An odd number of 10 ms frames gives the extractor a last stacked row that is half padding; toolkit
pooling includes it, masked pooling leaves it out.  :func:`pooling_errors` measures, per clip, the
relative error (max|ref - cand| / max|ref|) of embeddings against a reference; :func:`plot_pooling_choice`
draws them against clip duration, odd clips filled, even clips hollow, the bound as a line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from w2vlab._contract import SAMPLE_RATE, require
from w2vlab._features import num_frames

EXACT = 1e-9  # errors below this are drawn in the "exact" band at the bottom of the axis


def pooling_errors(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Per clip, max|ref - cand| / max|ref| of [N, D] embeddings -> [N]."""
    ref, cand = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if ref.shape != cand.shape or ref.ndim != 2:
        raise ValueError(f"expected two [N, D] arrays of one shape; got {ref.shape} and {cand.shape}")
    return np.abs(ref - cand).max(axis=1) / np.abs(ref).max(axis=1)


def plot_pooling_choice(
    num_samples: Sequence[int], errors: Mapping[str, Sequence[float]], bound: float, title: str = ""
):
    """Relative error per clip against duration for each choice in ``errors`` (name -> [N]).

    Odd frame counts are filled markers, even ones hollow; values under :data:`EXACT` sit in a
    labelled "exact" band; ``bound`` is the dashed line a file must stay under.
    """
    require("matplotlib", needed_by="w2vlab's figures", hint="pip install 'w2vlab[lab]'")
    from matplotlib.figure import Figure

    seconds = np.asarray(num_samples) / SAMPLE_RATE
    odd = np.array([num_frames(n) % 2 == 1 for n in num_samples])
    fig = Figure(figsize=(9.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    floor = EXACT / 10
    for (name, values), color, marker in zip(errors.items(), ("tab:blue", "tab:orange", "tab:green"), "os^"):
        y = np.maximum(np.asarray(values, np.float64), floor)
        ax.scatter(seconds[odd], y[odd], color=color, marker=marker, s=40, label=f"{name}, odd frame count")
        ax.scatter(
            seconds[~odd], y[~odd], facecolors="none", edgecolors=color, marker=marker, s=40, label=f"{name}, even"
        )
    ax.axhline(bound, color="black", linestyle="--", linewidth=1.0, label=f"bound {bound:.0e}")
    ax.axhspan(floor / 3, EXACT, color="0.92", zorder=0)
    ax.text(seconds.max(), math.sqrt(floor / 3 * EXACT), "exact ", ha="right", va="center", fontsize=8, color="0.4")
    ax.set_yscale("log")
    ax.set_ylim(floor / 3, max(1.0, 10 * max(max(v) for v in errors.values())))
    ax.set_xlabel("clip duration (s)")
    ax.set_ylabel("max|ref - cand| / max|ref|")
    ax.set_title(title or "Each pooling choice against the toolkit's own extraction")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: no point hidden
    return fig
