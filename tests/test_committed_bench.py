"""The committed full-size benchmark summary that notebook 06 draws with ``lab.plot_bench``
(``artifacts/bench/full_quick_2threads_latest.json``): every row the figure and docs/benchmark.md read is
there, with the fields they read.  These checks were printed in 06's reader path before issue #27."""

import json
import math
from pathlib import Path

import pytest

from w2vlab._contract import ALL_FORMATS

LATEST = Path(__file__).resolve().parents[1] / "artifacts" / "bench" / "full_quick_2threads_latest.json"
CANDIDATES = {"onnx-int8", "onnx-int8-spin", "bf16", "bf16-inductor"}  # --only reduced_precision


@pytest.fixture(scope="module")
def full() -> dict:
    return json.loads(LATEST.read_text())


def test_the_summary_is_a_full_size_run_with_every_row_06_reads(full):
    assert full["size"] == "full" and full["threads"] == 2
    rows = {"export_peak_rss", "reduced_precision_10s", "corpus_ray_vs_local", "corpus_peak_rss_n_vs_10n"}
    assert rows <= set(full["metrics"]), rows - set(full["metrics"])
    for key in ("merged", "added"):  # which rows a later --reuse run re-measured or added: named, not silent
        assert all(row in full["metrics"] for row in full.get(key, {}).get("rows", [])), key


def test_every_format_is_timed_against_eager_with_its_parity(full):
    formats = full["metrics"]["formats_vs_eager_10s"]["formats"]
    assert set(formats) == set(ALL_FORMATS)
    for fmt, row in formats.items():
        assert row["s"] > 0 and row["eager_s"] > 0, fmt
        assert row["ratio_vs_eager"] == pytest.approx(row["s"] / row["eager_s"], rel=1e-9), fmt
        assert (0.999 if fmt == "onnx-int8" else 0.99999) <= row["cosine"] <= 1.0 + 1e-12, fmt
        assert math.isfinite(row["max_abs_diff"]) and row["max_abs_diff"] >= 0, fmt


def test_every_reduced_precision_candidate_has_the_fields_drawn(full):
    runs = full["metrics"]["reduced_precision_10s"]["runs"]
    assert set(runs) == CANDIDATES
    for name, row in runs.items():
        assert row["ratio_vs_eager"] > 0 and 0.99 <= row["worst_cosine"] <= 1.0, name
        assert row["gflops"] > 0 and 0 < row["fraction_of_ceiling"] <= 1.0 and row["ceiling"], name
        assert row["build_s"] >= 0 and isinstance(row["flips"], int | dict), name


def test_the_figure_draws_the_summary(full):
    from matplotlib.figure import Figure

    from w2vlab import lab

    fig = lab.plot_bench(full)
    assert isinstance(fig, Figure) and len(fig.axes) >= 2
    assert "--size full, 2 threads" in fig._suptitle.get_text()
