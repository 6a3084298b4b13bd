"""Every plot returns a Figure with the expected artists, headless, without pyplot."""

import itertools

import matplotlib

matplotlib.use("Agg")  # before anything else can pick an interactive backend

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from w2vlab import lab
from w2vlab._parity import ParityBounds, compare
from w2vlab.lab import _plots as plots


def _bars(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def _dashed_lines(ax):
    return [line for line in ax.get_lines() if line.get_linestyle() == "--"]


@pytest.fixture
def embeddings() -> torch.Tensor:
    return torch.randn(5, 8, generator=torch.Generator().manual_seed(0))  # (N, D)


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before  # nothing registered with pyplot, so nothing can pop up


def _points(ax):
    """(x, y) of every dot drawn by scatter on ``ax``, in drawing order."""
    return np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])


def _bound_lines(ax):
    return [c for c in ax.collections if isinstance(c, LineCollection)]


def test_plot_parity_dots_against_duration_bounds_and_failures(embeddings):
    candidate = embeddings.clone()
    candidate[1] = embeddings[1]  # exact zero: drawn in the "exact" band
    candidate[3, 2] += 1e-3
    candidate[[0, 2, 4]] += 1e-7
    lengths = [16000, 32000, 8000, 160000, 4000]
    report = compare(embeddings, candidate, label="eager vs script", num_samples=lengths)
    fig = plots.plot_parity(report)
    assert isinstance(fig, Figure)
    ax_cos, ax_max = fig.axes[:2]
    for ax in (ax_cos, ax_max):
        assert ax.get_yscale() == "log" and ax.get_xscale() == "log"
        assert ax.get_xlabel() == "clip duration (s)"
        assert sorted(_points(ax)[:, 0]) == pytest.approx(sorted(n / 16000 for n in lengths))
    (bound,) = _bound_lines(ax_max)
    assert bound.get_segments()[0][0][1] == pytest.approx(3e-5)  # the default relative bound
    assert ax_max.get_ylabel() == "max |diff| / max |ref|"  # the bounded quantity, not the absolute one
    max_ref = embeddings.double().abs().max(dim=1).values  # (N,)
    by_x = {round(x, 6): y for x, y in _points(ax_max)}
    assert by_x[10.0] == pytest.approx(1e-3 / float(max_ref[3]), rel=1e-4)  # clip3 is 160000 samples
    band_lo, band_hi = ax_max.get_ylim()[0], min(p.get_y() + p.get_height() for p in ax_max.patches)
    assert band_lo < by_x[2.0] < band_hi  # clip1, exact, sits in the band, below every nonzero value
    assert "exact (0)" in [t.get_text() for t in ax_max.texts]
    red = [
        c
        for c in ax_max.collections
        if isinstance(c, PathCollection) and to_rgba(c.get_facecolor()[0]) == to_rgba(plots.FAIL_COLOR)
    ]
    assert [list(p) for c in red for p in c.get_offsets()] == [[10.0, by_x[10.0]]]  # only clip3 breaches it
    assert "clip3" in [t.get_text() for t in ax_max.texts]  # the failing clip is named
    assert "outside" in ax_max.get_title()
    assert fig._suptitle.get_text() == "eager vs script: FAIL (1/5 clips)"
    fig.savefig(__import__("io").BytesIO(), format="png")  # renders headless


def test_plot_parity_headroom_and_exact_copies(embeddings):
    report = compare(embeddings, embeddings.double() * (1 + 1e-7), num_samples=[16000] * 5)
    title = plots.plot_parity(report).axes[1].get_title()
    worst = report.worst_max_rel_diff
    assert f"{worst:.1e} vs 3e-05, {3e-5 / worst:.3g}x headroom" in title
    exact = plots.plot_parity(compare(embeddings, embeddings))
    assert exact._suptitle.get_text() == "PASS"
    assert "exact on every clip" in exact.axes[0].get_title()
    assert exact.axes[0].get_xlabel() == "clip"  # lengths unknown: the clips in order


def test_plot_format_parity_one_series_per_format_shared_bounds_and_failures(embeddings):
    lengths = [16000, 32000, 8000, 160000, 4000]
    exact = compare(embeddings, embeddings, num_samples=lengths)
    close = compare(embeddings, embeddings.double() * (1 + 1e-7), num_samples=lengths)
    int8_bounds = ParityBounds(min_cosine=0.999, max_rel_diff=0.3)
    off = embeddings.double().clone()
    off[3] = -off[3]  # one clip turned around: cosine -1, outside any bound
    labelled = compare(embeddings, off, num_samples=lengths, bounds=int8_bounds)
    fig = plots.plot_format_parity({"torchscript": exact, "onnx": close, "onnx-int8": labelled})
    ax_cos, ax_max = fig.axes[:2]
    for ax in (ax_cos, ax_max):
        assert ax.get_yscale() == "log" and ax.get_xscale() == "log" and ax.get_xlabel() == "clip duration (s)"
        dots = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(dots) == 4  # one series per format, and the ring around the failing clip
        xs = [np.sort(c.get_offsets()[:, 0]) for c in dots[:3]]
        for x in xs:  # each format at the clips' durations, nudged sideways by under 10%
            assert list(x) == pytest.approx(sorted(n / 16000 for n in lengths), rel=0.1)
        assert not np.allclose(xs[0], xs[1])  # nudged: the exact and the close dots do not hide each other
        ring = dots[3]
        assert to_rgba(ring.get_edgecolor()[0]) == to_rgba(plots.FAIL_COLOR)
        assert list(ring.get_offsets()[:, 0]) == pytest.approx([10.0], rel=0.1)  # the 10 s clip, turned around
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [
            "bound of torchscript, onnx",
            "bound of onnx-int8",
        ]
    (shared, _), (own, _) = [(c, c.get_linestyle()) for c in _bound_lines(ax_max)]
    assert shared.get_segments()[0][0][1] == pytest.approx(3e-5) and own.get_segments()[0][0][1] == pytest.approx(0.3)
    band_top = min(p.get_y() + p.get_height() for p in ax_cos.patches)
    exact_y = ax_cos.collections[0].get_offsets()[:, 1]
    assert (exact_y < band_top).all()  # torchscript's zeros sit in the exact band
    assert "onnx-int8" in ax_cos.get_title() and "outside" in ax_cos.get_title()
    assert fig._suptitle.get_text() == "3 formats vs eager on 5 clips: outside their bounds: onnx-int8"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "torchscript",
        "onnx",
        "onnx-int8",
        "outside its bound",
    ]
    with pytest.raises(TypeError, match="ParityReport"):
        plots.plot_format_parity({"onnx": {"passed": True}})
    with pytest.raises(ValueError, match="length"):
        plots.plot_format_parity({"onnx": compare(embeddings, embeddings)})


def test_plot_parity_short_names_for_batch_rows():
    assert plots._short_name("batch_160000+16161+24000+8160[3]") == "batch[3]"
    assert plots._short_name("padded/batch_560+48000[1]") == "batch[1]"
    assert plots._short_name("speech_en_m3_1p01s") == "speech_…m3_1p01s"
    assert plots._short_name("synth_560") == "synth_560"


def test_plot_parity_draws_an_absolute_bound_where_only_that_is_held(embeddings):
    candidate = embeddings.double() + 2e-5
    report = compare(embeddings, candidate, bounds=ParityBounds(max_rel_diff=None, max_abs_diff=1e-5))
    ax_max = plots.plot_parity(report).axes[1]
    assert ax_max.get_ylabel() == "max |diff|"
    assert _bound_lines(ax_max)[0].get_segments()[0][0][1] == pytest.approx(1e-5)
    assert list(_points(ax_max)[:, 1]) == pytest.approx([2e-5] * 5, rel=1e-6)
    unbounded = compare(embeddings, candidate, bounds=ParityBounds(max_rel_diff=None))
    assert _bound_lines(plots.plot_parity(unbounded).axes[1]) == []  # nothing held: no line
    with pytest.raises(TypeError, match="ParityReport"):
        plots.plot_parity({"passed": True})


def test_plot_format_parity_draws_levels_on_the_cosine_panel_only(embeddings):
    lengths = [16000, 32000, 8000, 160000, 4000]
    exact = compare(embeddings, embeddings, num_samples=lengths)
    wrong = compare(embeddings, embeddings.roll(1, 0), num_samples=lengths)
    fig = plots.plot_format_parity({"exact": exact, "wrong": wrong}, levels={"same speaker": 0.3})
    ax_cos, ax_max = fig.axes[:2]
    drawn = [[line.get_ydata()[0] for line in ax.get_lines() if len(line.get_ydata())] for ax in (ax_cos, ax_max)]
    assert drawn == [[0.3], []]  # the level; legend-only bound entries have no data
    assert ax_cos.get_ylim()[1] > 0.3  # the level is inside the axis
    e, f = embeddings.double(), embeddings.roll(1, 0).double()
    one_minus_cos = 1 - (e * f).sum(1) / (e.norm(dim=1) * f.norm(dim=1))  # (N,), independent of compare
    wrong_series = [c for c in ax_cos.collections if isinstance(c, PathCollection)][1]
    assert sorted(wrong_series.get_offsets()[:, 1]) == pytest.approx(sorted(one_minus_cos.tolist()), rel=1e-6)
    assert "same speaker" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_plot_embedding_scatter(embeddings):
    fig = plots.plot_embedding_scatter(embeddings, embeddings.double() + 1e-6, title="eager vs script")
    ax = fig.axes[0]
    assert ax.collections[0].get_offsets().shape == (embeddings.numel(), 2)
    (identity,) = _dashed_lines(ax)
    x, y = identity.get_data()
    assert list(x) == list(y)  # y = x
    assert any("max|diff| = 1.00e-06" in t.get_text() for t in ax.texts)
    with pytest.raises(ValueError, match="shape"):
        plots.plot_embedding_scatter(embeddings, embeddings[:, :4])


def test_plot_feature_difference():
    ref = np.zeros((20, 160))
    cand = ref.copy()
    cand[7, 42] = 3e-4
    fig = plots.plot_feature_difference(ref[None], torch.from_numpy(cand), title="HF vs torch")
    ax_ref, ax_diff = fig.axes[:2]  # then their colourbars
    mesh = ax_diff.collections[0]
    assert mesh.get_array().shape == (80, 40)  # [T, 160] stacked rows unstacked: 80 mel bins x 2T frames
    assert mesh.get_array().max() == pytest.approx(3e-4)
    assert ax_diff.get_xlim()[1] == pytest.approx(40 * 160 / 16000, abs=0.01)  # 40 frames of 10 ms: seconds on x
    assert ax_ref.get_ylabel() == "mel frequency (Hz)" and ax_diff.get_xlabel() == "time (s)"
    assert ax_diff.get_title() == "max|diff| = 3.00e-04 at frame 7, bin 42"
    assert fig._suptitle.get_text() == "HF vs torch"
    with pytest.raises(ValueError, match=r"\(20, 160\).*\(20, 80\)"):
        plots.plot_feature_difference(ref, ref[:, :80])


def test_plot_latency_ratio_labels():
    fig = plots.plot_latency({"eager": 20.0, "script": 10.0, "reloaded": 11.0}, baseline="eager")
    ax = fig.axes[0]
    assert len(_bars(ax)) == 3
    labels = [t.get_text() for t in ax.texts]
    assert labels == ["20 ms\n1.00x", "10 ms\n0.50x", "11 ms\n0.55x"]
    with pytest.raises(ValueError, match="baseline 'gpu' is not one of"):
        plots.plot_latency({"eager": 1.0}, baseline="gpu")
    with pytest.raises(ValueError, match="empty"):
        plots.plot_latency({})


def test_plot_similarity_matrix(embeddings):
    names = [f"clip{i}" for i in range(5)]
    fig = plots.plot_similarity_matrix(embeddings, names)
    ax = fig.axes[0]
    sim = ax.images[0].get_array()
    assert sim.shape == (5, 5) and sim.mask.diagonal().all()  # each clip with itself: not coloured
    expected = (embeddings @ embeddings.T) / torch.outer(embeddings.norm(dim=1), embeddings.norm(dim=1))
    off = ~np.eye(5, dtype=bool)
    assert ax.images[0].get_clim() == pytest.approx((expected.numpy()[off].min(), expected.numpy()[off].max()))
    assert len(ax.texts) == 25 and ax.texts[0].get_text() == "1.00"
    with pytest.raises(ValueError, match="4 names for 5 embeddings"):
        plots.plot_similarity_matrix(embeddings, names[:4])


def test_plot_similarity_matrix_sorts_clips_by_speaker_and_draws_the_blocks():
    rng = np.random.default_rng(0)
    centres = {"bob": rng.normal(size=16), "amy": rng.normal(size=16)}
    speakers = ["bob", "amy", "bob", "amy", "bob"]
    emb = np.stack([centres[s] + 0.1 * rng.normal(size=16) for s in speakers])  # (5, 16)
    fig = plots.plot_similarity_matrix(emb, [f"u{i}" for i in range(5)], speakers=speakers)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["amy", "bob"]
    assert list(ax.get_yticks()) == [0.5, 3.0]  # amy: rows 0-1, bob: rows 2-4
    horizontal = {line.get_ydata()[0] for line in ax.get_lines() if line.get_ydata()[0] == line.get_ydata()[1]}
    vertical = {line.get_xdata()[0] for line in ax.get_lines() if line.get_xdata()[0] == line.get_xdata()[1]}
    assert horizontal == vertical == {1.5}  # the speaker boundary, both ways
    sim = ax.images[0].get_array()
    assert sim[0, 1] > 0.9 and sim[0, 2] < sim[0, 1]  # same speaker above different speakers, after sorting
    assert "same speaker" in ax.get_title()
    with pytest.raises(ValueError, match="4 speakers for 5 embeddings"):
        plots.plot_similarity_matrix(emb, [f"u{i}" for i in range(5)], speakers=speakers[:4])


def test_plot_layer_widths():
    widths = {"heads": [16, 12, 0], "ffn1": [4096, 1024, 2048], "ffn2": [4096, 0, 512], "conv": [1024, None, 256]}
    fig = plots.plot_layer_widths(widths, title="student")
    assert len(fig.axes) == 4
    for ax, series in zip(fig.axes, widths.values()):
        assert [bar.get_height() for bar in _bars(ax)] == [w or 0 for w in series]
    with pytest.raises(ValueError, match="lengths"):
        plots.plot_layer_widths({"heads": [1, 2], "ffn1": [3]})


def test_plot_bench_splits_lower_and_higher_is_better():
    result = {
        "size": "full",
        "threads": 2,
        "metrics": {
            "a_vs_b": {"ratio": 0.8, "target": "<= 1.0", "met": True},
            "c_vs_d": {"ratio": 1.3, "target": "<= 1.2", "met": False},
            "speedup": {"ratio": 5.2, "target": ">= 5x faster", "met": True},
            "overhead": {"ratio": 1.01, "target": "overhead <= 0.05", "met": True},  # lower, no value to draw
            "ray": {"ratio": 0.5, "target": "max|diff| <= 1e-05; no target", "met": True},  # no direction
            "flops": {"fraction_of_best": {"eager": 0.6}, "target": ">= 0.8", "met": False},  # no ratio: not drawn
            "formats_vs_eager_10s": {
                "formats": {
                    "onnx": {"ratio_vs_eager": 0.45, "cosine": 1.0},
                    "onnx-int8": {"ratio_vs_eager": 0.3, "cosine": 0.9999},
                },
                "target": "x",
                "met": True,
            },
        },
    }
    fig = plots.plot_bench(result)
    lower, higher, formats = fig.axes
    assert [t.get_text() for t in lower.get_yticklabels()] == ["a_vs_b", "c_vs_d", "overhead"]
    assert [t.get_text() for t in higher.get_yticklabels()] == ["speedup"]
    assert "lower is better" in lower.get_title() and "higher is better" in higher.get_title()
    colours = [to_rgba(p.get_facecolor()) for p in lower.patches]
    assert colours == [to_rgba(plots.PASS_COLOR), to_rgba(plots.FAIL_COLOR), to_rgba(plots.PASS_COLOR)]
    targets = [line.get_xdata()[0] for line in lower.get_lines() if line.get_linewidth() == 2]
    assert targets == [1.0, 1.2]  # "overhead <= 0.05" bounds another quantity: no tick drawn
    assert "corpus" not in fig._suptitle.get_text() and "ray" in fig._suptitle.get_text()
    assert [p.get_height() for p in formats.patches] == [0.45, 0.3] and formats.patches[1].get_hatch() == "//"
    with pytest.raises(ValueError, match="non-empty 'metrics'"):
        plots.plot_bench({"size": "tiny"})


def test_plot_bench_adds_the_reduced_precision_candidates_that_are_not_formats():
    result = {
        "size": "full",
        "threads": 2,
        "metrics": {
            "formats_vs_eager_10s": {
                "formats": {
                    "onnx": {"ratio_vs_eager": 0.9, "cosine": 1.0},
                    "onnx-int8": {"ratio_vs_eager": 0.45, "cosine": 0.9999},
                }
            },
            "reduced_precision_10s": {
                "ratio": 0.35,
                "target": "<= 0.3 with int8 parity bounds",
                "met": False,
                "runs": {
                    "onnx-int8": {"ratio_vs_eager": 0.44, "worst_cosine": 0.9985},  # already a format: not drawn twice
                    "onnx-int8-spin": {"ratio_vs_eager": 0.41, "worst_cosine": 0.9985, "cosine": {"clip10": 0.9999}},
                    "bf16-inductor": {"ratio_vs_eager": 0.35, "worst_cosine": 0.99998},
                },
            },
        },
    }
    left, right = plots.plot_bench(result).axes
    assert [t.get_text() for t in left.get_yticklabels()] == ["reduced_precision_10s"]
    assert [t.get_text() for t in right.get_xticklabels()] == ["onnx", "onnx-int8", "onnx-int8-spin", "bf16-inductor"]
    assert [p.get_height() for p in right.patches] == [0.9, 0.45, 0.41, 0.35]
    assert [p.get_hatch() for p in right.patches] == [None, "//", "//", None]
    assert len({to_rgba(p.get_facecolor()) for p in right.patches}) == 1  # one colour: no per-format target
    assert 0.3 in [line.get_ydata()[0] for line in right.get_lines()]  # the reduced-precision target


# --- every figure w2vlab.lab returns, inspected: title, axis labels, a legend for several series, nothing
# --- outside the figure.  A plot function added without a sample below fails test_every_plot_has_a_sample.


def _sample_trials():
    from w2vlab.corpus._trials import Trials, TrialScores, compare_trials

    rng = np.random.default_rng(0)
    labels = np.array([1, 0] * 40)
    keys = [f"u{i}" for i in range(80)]
    trials = Trials(tuple(keys), tuple(reversed(keys)), labels)
    ref = np.where(labels == 1, 0.7, 0.2) + 0.1 * rng.normal(size=80)
    ref_scores = TrialScores(trials, ref)
    return compare_trials(ref_scores, TrialScores(trials, ref + 1e-3 * rng.normal(size=80)), label="a vs b")


def _samples(embeddings):
    """One call per public plot function, on small inputs shaped like the notebooks' (batch rows included)."""
    lengths = [560, 8160, 16000, 160000, 16160]
    names = ["synth_560", "synth_8160_odd", "speech_en_m3_1p01s", "batch_160000+16161+24000+8160[0]", "b[1]"]
    failing = compare(embeddings, embeddings.double() * 1.01, names=names, num_samples=lengths, label="int8")
    bench = {
        "size": "tiny",
        "threads": 2,
        "metrics": {
            "a_vs_b": {"ratio": 0.8, "target": "<= 1.0", "met": True},
            "speedup": {"ratio": 5.2, "target": ">= 5x faster", "met": True},
            "formats_vs_eager_10s": {"formats": {"onnx": {"ratio_vs_eager": 0.45, "cosine": 1.0}}},
        },
    }
    feats = np.random.default_rng(1).normal(size=(30, 160))
    return {
        "plot_parity": [
            lambda: plots.plot_parity(failing),
            lambda: plots.plot_parity(compare(embeddings, embeddings, names=names)),
            lambda: plots.plot_parity(  # notebook 02's naive trace: its clip names, failing at 1, 2, 3 and 5 s
                compare(
                    embeddings,
                    torch.cat([embeddings[:1], embeddings.roll(1, 0)[1:]]),
                    names=["32000 samples (the tracing example itself)", "32000 samples (example length)"]
                    + [f"{n} samples" for n in (16000, 16160, 48000)],
                    num_samples=[32000, 32000, 16000, 16160, 48000],
                )
            ),
        ],
        "plot_format_parity": [
            lambda: plots.plot_format_parity(
                {
                    "torchscript": compare(embeddings, embeddings, names=names, num_samples=lengths),
                    "onnx": compare(embeddings, embeddings.double() * (1 + 1e-7), names=names, num_samples=lengths),
                    "onnx-int8": failing,
                }
            )
        ],
        "plot_embedding_scatter": [lambda: plots.plot_embedding_scatter(embeddings, embeddings.double() + 1e-6)],
        "plot_feature_difference": [lambda: plots.plot_feature_difference(feats, feats + 1e-6)],
        "plot_latency": [lambda: plots.plot_latency({"eager": 20.0, "script": 10.0}, baseline="eager")],
        "plot_similarity_matrix": [
            lambda: plots.plot_similarity_matrix(embeddings, names),
            lambda: plots.plot_similarity_matrix(embeddings, names, speakers=["a", "b", "a", "b", "b"]),
        ],
        "plot_layer_widths": [lambda: plots.plot_layer_widths({"heads": [16, 12], "ffn1": [4096, 1024]})],
        "plot_bench": [lambda: plots.plot_bench(bench)],
        "plot_trial_parity": [lambda: plots.plot_trial_parity(_sample_trials())],
        "plot_pooling_choice": [
            lambda: lab.plot_pooling_choice(
                [8000, 8160, 16000, 16160],
                {"toolkit pooling": [3e-7, 0.0, 2e-7, 4e-7], "masked pooling": [3e-7, 1e-2, 2e-7, 3e-3]},
                bound=3e-5,
            )
        ],
    }


def _drawn_texts(fig):
    """(text, the axes it belongs to or None) for every visible, non-empty Text the figure draws: tick labels
    only where the tick is in view."""
    tick_texts = set()
    shown = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            log = axis.get_scale() == "log"  # compare decades there: a linear tolerance would swallow 1e-12
            where = (lambda v: np.log10(v) if v > 0 else -np.inf) if log else (lambda v: v)
            lo, hi = sorted(where(v) for v in axis.get_view_interval())
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                tick_texts.update((id(tick.label1), id(tick.label2)))
                if lo - 1e-9 * abs(hi - lo) <= where(tick.get_loc()) <= hi + 1e-9 * abs(hi - lo):
                    shown += [(t, ax) for t in (tick.label1, tick.label2) if t.get_visible()]
    shown += [(t, t.axes) for t in fig.findobj(Text) if id(t) not in tick_texts and t.get_visible()]
    return [(t, ax) for t, ax in shown if t.get_text().strip()]


def _series(ax):
    """Data series on ``ax``: scatters, bar groups, histograms and lines of more than a reference segment."""
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) > 2 or line.get_marker() not in ("None", "")]
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    return len(lines) + len(scatters) + len(ax.containers)


def figure_problems(fig):
    """What a reader would miss in ``fig``: a title, axis labels, a legend for several series, text in view."""
    problems = []
    titled = (fig._suptitle is not None and fig._suptitle.get_text()) or any(ax.get_title() for ax in fig.axes)
    if not titled:
        problems.append("no title")
    colorbars = {id(ax) for ax in fig.axes if hasattr(ax, "_colorbar")}
    for i, ax in enumerate(fig.axes):
        if id(ax) in colorbars or not ax.get_visible():
            continue
        siblings = ax.get_shared_x_axes().get_siblings(ax)
        if not any(a.get_xlabel() for a in siblings):
            problems.append(f"axes {i} has no x label")
        if not ax.get_ylabel():
            problems.append(f"axes {i} has no y label")
        if _series(ax) >= 2 and ax.get_legend() is None and not fig.legends:
            problems.append(f"axes {i} draws {_series(ax)} series and no legend")
    FigureCanvasAgg(fig)  # a Figure made without pyplot has a bare canvas; Agg draws it headless
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    texts, owners = zip(*_drawn_texts(fig)) if _drawn_texts(fig) else ((), ())
    extents = [text.get_window_extent(renderer) for text in texts]
    for text, extent in zip(texts, extents):
        if extent.x0 < box.x0 - 1 or extent.y0 < box.y0 - 1 or extent.x1 > box.x1 + 1 or extent.y1 > box.y1 + 1:
            problems.append(f"text {text.get_text()!r} lies outside the figure")
    for i, j in itertools.combinations(range(len(texts)), 2):  # labels written over each other cannot be read
        a, b = extents[i].padded(-1), extents[j].padded(-1)
        if a.overlaps(b) and owners[i] is owners[j]:
            problems.append(f"texts {texts[i].get_text()!r} and {texts[j].get_text()!r} overlap")
    return problems


def test_every_plot_has_a_sample(embeddings):
    public = {name for name in lab.__all__ if name.startswith("plot_")}
    assert public == set(_samples(embeddings))


def test_every_figure_reads_on_its_own(embeddings):
    for name, calls in _samples(embeddings).items():
        for call in calls:
            fig = call()
            assert figure_problems(fig) == [], name


def test_the_inspection_catches_a_bad_figure():
    fig = Figure(figsize=(5, 4))
    fig.subplots_adjust(left=0.2, bottom=0.2)  # room for the labels the fix adds
    ax = fig.subplots()
    ax.scatter([0, 1], [0, 1])
    ax.scatter([0, 1], [1, 0])  # two series, no legend
    ax.text(1.2, 0.5, "far off to the right", transform=fig.transFigure)
    ax.text(0.5, 0.5, "written here")
    ax.text(0.52, 0.5, "and here")
    problems = figure_problems(fig)
    assert problems == [
        "no title",
        "axes 0 has no x label",
        "axes 0 has no y label",
        "axes 0 draws 2 series and no legend",
        "text 'far off to the right' lies outside the figure",
        "texts 'written here' and 'and here' overlap",
    ]
    ax.set(title="fixed", xlabel="x", ylabel="y")
    ax.legend(["a", "b"])
    ax.texts[0].set_x(0.5)
    ax.texts[2].set_y(0.1)
    assert figure_problems(fig) == []


def test_the_inspection_catches_a_clipped_tick_label():
    fig = Figure(figsize=(3, 2))  # no layout engine: a long y tick label runs off the left edge
    fig.subplots_adjust(left=0.3, bottom=0.3)  # room for everything else
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="one line")
    ax.set_yticks([0, 1], ["a very very long tick label", "b"])
    ax.set(title="t", xlabel="x", ylabel="y")
    assert "text 'a very very long tick label' lies outside the figure" in figure_problems(fig)
    ax.set_yticks([0, 1], ["a", "b"])
    assert figure_problems(fig) == []
