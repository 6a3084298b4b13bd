"""Every plot returns a Figure with the expected artists, headless, without pyplot."""

import matplotlib

matplotlib.use("Agg")  # before anything else can pick an interactive backend

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

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


def test_plot_parity_bars_bounds_and_failure_colour(embeddings):
    candidate = embeddings.clone()
    candidate[1] = embeddings[1]  # exact zero: drawn at the floor, marked "0"
    candidate[3, 2] += 1e-3
    candidate[[0, 2, 4]] += 1e-7
    report = compare(embeddings, candidate, label="eager vs script")
    fig = plots.plot_parity(report)
    assert isinstance(fig, Figure)
    ax_cos, ax_max = fig.axes[:2]
    for ax in (ax_cos, ax_max):
        assert len(_bars(ax)) == len(report.clips)
        assert ax.get_yscale() == "log"
        assert len(_dashed_lines(ax)) == 1  # the bound
    assert _dashed_lines(ax_max)[0].get_ydata()[0] == pytest.approx(3e-5)  # the default relative bound
    assert ax_max.get_ylabel() == "max |diff| / max |ref|"  # the bounded quantity, not the absolute one
    heights = [bar.get_height() for bar in _bars(ax_max)]
    max_ref = embeddings.double().abs().max(dim=1).values  # (N,)
    assert heights[3] == pytest.approx(1e-3 / float(max_ref[3]), rel=1e-4)
    colors = [to_rgba(bar.get_facecolor()) for bar in _bars(ax_max)]
    assert colors[3] != colors[0] and colors.count(colors[0]) == 4  # only clip3 breaches max|diff|
    assert "0" in [t.get_text() for t in ax_max.texts]
    assert fig._suptitle.get_text() == "eager vs script: FAIL (1/5 clips)"
    fig.savefig(__import__("io").BytesIO(), format="png")  # renders headless


def test_plot_parity_draws_an_absolute_bound_where_only_that_is_held(embeddings):
    candidate = embeddings.double() + 2e-5
    report = compare(embeddings, candidate, bounds=ParityBounds(max_rel_diff=None, max_abs_diff=1e-5))
    ax_max = plots.plot_parity(report).axes[1]
    assert ax_max.get_ylabel() == "max |diff|"
    assert _dashed_lines(ax_max)[0].get_ydata()[0] == pytest.approx(1e-5)
    assert [bar.get_height() for bar in _bars(ax_max)] == pytest.approx([2e-5] * 5, rel=1e-6)
    unbounded = compare(embeddings, candidate, bounds=ParityBounds(max_rel_diff=None))
    assert _dashed_lines(plots.plot_parity(unbounded).axes[1]) == []  # nothing held: no line


def test_plot_parity_all_pass_title(embeddings):
    fig = plots.plot_parity(compare(embeddings, embeddings))
    assert fig._suptitle.get_text() == "PASS"
    with pytest.raises(TypeError, match="ParityReport"):
        plots.plot_parity({"passed": True})


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
    ax = fig.axes[0]
    assert ax.images[0].get_array().shape == (160, 20)  # bins on y, frames on x
    assert len(fig.axes) == 2  # heatmap + colorbar
    assert ax.get_title() == "HF vs torch: max|diff| = 3.00e-04 at frame 7, bin 42"
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
    names = [f"spk{i}" for i in range(5)]
    fig = plots.plot_similarity_matrix(embeddings, names)
    ax = fig.axes[0]
    sim = ax.images[0].get_array()
    assert sim.shape == (5, 5) and np.allclose(np.diag(sim), 1.0)
    assert len(ax.texts) == 25 and ax.texts[0].get_text() == "1.00"
    with pytest.raises(ValueError, match="4 names for 5 embeddings"):
        plots.plot_similarity_matrix(embeddings, names[:4])


def test_plot_layer_widths():
    widths = {"heads": [16, 12, 0], "ffn1": [4096, 1024, 2048], "ffn2": [4096, 0, 512], "conv": [1024, None, 256]}
    fig = plots.plot_layer_widths(widths, title="student")
    assert len(fig.axes) == 4
    for ax, series in zip(fig.axes, widths.values()):
        assert [bar.get_height() for bar in _bars(ax)] == [w or 0 for w in series]
    with pytest.raises(ValueError, match="lengths"):
        plots.plot_layer_widths({"heads": [1, 2], "ffn1": [3]})


def test_plot_bench_colours_met_and_unmet_targets():
    result = {
        "size": "full",
        "threads": 2,
        "metrics": {
            "a_vs_b": {"ratio": 0.8, "target": "<= 1.0", "met": True},
            "c_vs_d": {"ratio": 1.3, "target": "<= 1.2", "met": False},
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
    left, right = fig.axes
    assert [t.get_text() for t in left.get_yticklabels()] == ["a_vs_b", "c_vs_d"]
    colours = [p.get_facecolor() for p in left.patches]
    assert colours[0] != colours[1]  # met vs not met
    assert [p.get_height() for p in right.patches] == [0.45, 0.3] and right.patches[1].get_hatch() == "//"
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
                "target": "<= 0.3",
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
    assert right.patches[0].get_facecolor() != right.patches[3].get_facecolor()  # format vs candidate
    assert 0.3 in [line.get_ydata()[0] for line in right.get_lines()]  # the reduced-precision target
