"""The benchmark's OpenVINO family on the tiny model: every precision set explicitly and reported back, f32
against the eager model, and the family's rows (fields and parity only: speed is never asserted)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
import torch

from w2vlab._benchrow import SKIPPED
from w2vlab._contract import onnx_available
from w2vlab.bench import _harness as bench
from w2vlab.bench import _metrics_openvino as family
from w2vlab.bench._context import BenchContext
from w2vlab.bench._openvino import CANDIDATES, compile_config, nncf_available, openvino_available

needs_openvino = pytest.mark.skipif(
    not (openvino_available() and onnx_available()), reason="needs the [openvino] and [onnx] extras"
)


def test_without_openvino_the_family_is_skipped_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr("w2vlab.bench._openvino.openvino_available", lambda: False)
    rows = family.metric_openvino(BenchContext("tiny", True, 2, tmp_path))
    assert set(rows) == {family.OPENVINO_ROW}
    assert "openvino is not installed" in rows[family.OPENVINO_ROW][SKIPPED]
    assert 'pip install "w2vlab[openvino]"' in rows[family.OPENVINO_ROW][SKIPPED]


def test_every_candidate_names_its_precision_and_nothing_else_is_accepted():
    assert {precision for _, precision in CANDIDATES.values()} == {"f32", "bf16"}
    assert compile_config("bf16", 3) == {
        "INFERENCE_PRECISION_HINT": "bf16",
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": "3",
    }
    with pytest.raises(ValueError, match="must be 'f32' or 'bf16'; got 'f16'"):
        compile_config("f16", 2)


@pytest.fixture(scope="module")
def tiny_onnx(tiny_dir, tiny_all_formats):
    """The tiny demo's eager model, its extractor and its artifact's preprocessed fp32 ONNX file (the
    session's shared export)."""
    from w2vlab._contract import FILES
    from w2vlab.model._checkpoint import feature_extractor_for, load_speaker_encoder

    loaded = load_speaker_encoder(tiny_dir)
    return loaded.model, feature_extractor_for(loaded), tiny_all_formats[0] / FILES["onnx", "preprocessed"]


@needs_openvino
def test_openvino_f32_matches_the_eager_model_and_bf16_is_what_it_says(tiny_onnx):
    from w2vlab._features import extractor_valid_rows
    from w2vlab.bench._openvino import build_openvino
    from w2vlab.export._suite import synthetic_speech

    model, fe, path = tiny_onnx
    runners, facts = build_openvino(path, 2, None, 160)  # no calibration: the float candidates only
    assert set(runners) == {"openvino-f32", "openvino-bf16"}
    for name in runners:
        assert facts[name]["reported"] == {
            "INFERENCE_PRECISION_HINT": CANDIDATES[name][1],
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": "2",
        }
        assert facts[name]["compile_s"] > 0
    with torch.inference_mode():
        for n, seed in ((560, 0), (16160, 1), (3 * 16000, 2)):
            feats = extractor_valid_rows(fe, synthetic_speech(n, seed=seed))
            want, got = model(feats), runners["openvino-f32"](feats)
            assert got.shape == want.shape and got.dtype == torch.float32
            assert (got - want).abs().max() <= 1e-4 * want.abs().max(), n
            bf16 = runners["openvino-bf16"](feats)
            assert torch.nn.functional.cosine_similarity(bf16, want).min() >= 0.99, n
            assert not torch.equal(bf16, got), n  # bf16 arithmetic really ran


@pytest.mark.slow  # the family end to end: NNCF, four compiles, a child process (13-55 s here, plus the shared export)
@needs_openvino
def test_the_family_runs_through_the_bench_and_reports_every_runner(tmp_path, tiny_dir, tiny_all_formats):
    work = tmp_path / "work"
    shutil.copytree(tiny_dir, work / "demo_tiny")
    shutil.copytree(tiny_all_formats[0], work / "artifact_tiny")
    path = tmp_path / "b.json"
    argv = ["--size", "tiny", "--quick", "--workdir", str(work), "--reuse", "--only", "openvino", "--json", str(path)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert bench.main(argv) == 0
    result = json.loads(path.read_text())
    row = result["metrics"][family.OPENVINO_ROW]
    runs = row["runs"]
    expected = {"onnx", "onnx-int8", "openvino-f32", "openvino-bf16"}  # ONNX Runtime's as reference
    assert set(runs) == expected | ({"openvino-int8", "openvino-int8-bf16"} if nncf_available() else set())
    assert row["ratio"] == row["openvino_f32_s"] / row["eager_s"] == runs["openvino-f32"]["ratio_vs_eager"]
    assert row["f32_vs_onnxruntime"] == runs["openvino-f32"]["s"] / runs["onnx"]["s"]
    for name, run in runs.items():
        assert {"s", "eager_s", "ratio_vs_eager", "worst_cosine", "max_abs_diff", "gflops", "ceiling"} <= set(run)
        assert run["s"] > 0 and np.isfinite(run["max_abs_diff"]), name
        if name.startswith("openvino"):
            assert run["compile_s"] > 0 and run["reported"]["INFERENCE_PRECISION_HINT"] == CANDIDATES[name][1]
    for name in ("onnx", "openvino-f32"):  # fp32 against this process's eager model, every parity clip
        assert runs[name]["within_fp32_bounds"] and runs[name]["max_rel_diff"] <= 1e-4, name
    assert runs["openvino-bf16"]["ceiling"] == "bf16" and runs["openvino-bf16"]["worst_cosine"] >= 0.99
    if nncf_available():
        assert runs["openvino-int8"]["ceiling"] == "int8" and runs["openvino-int8"]["quantize_s"] > 0
        assert runs["openvino-int8"]["cosine"]["clip10"] >= 0.99  # the long clip; 1-frame clips are worse
    assert row["child_peak_rss_bytes"] >= row["build_peak_rss_bytes"] > 0
    assert row["cpu"]["openvino_default_precision"] in ("f32", "bf16")


@needs_openvino
def test_an_nncf_failure_keeps_the_float_candidates_and_names_the_error(tiny_onnx, monkeypatch):
    from w2vlab.bench import _openvino

    def refuse(model, calibration):
        raise KeyError("3162 node_select")  # what NNCF 3.4 raised at full size

    monkeypatch.setattr(_openvino, "quantize_int8", refuse)
    monkeypatch.setattr(_openvino, "nncf_available", lambda: True)
    runners, facts = _openvino.build_openvino(tiny_onnx[2], 2, {"calib": torch.zeros(1, 5, 160)}, 160)
    assert set(runners) == {"openvino-f32", "openvino-bf16"}
    assert facts["int8_error"] == "KeyError: '3162 node_select'"
