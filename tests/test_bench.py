"""The benchmark harness runs end to end on the tiny model (fields only: speed is never asserted)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import w2vlab
from w2vlab._allocator import is_glibc
from w2vlab._benchrow import metric_row
from w2vlab._contract import ALL_FORMATS, onnx_available
from w2vlab.bench import _child as bench_child
from w2vlab.bench import _harness as bench
from w2vlab.bench import _procs as procs
from w2vlab.bench._flops import encoder_flops, flop_facts
from w2vlab.bench._metrics_corpus import metric_corpus_peak_rss
from w2vlab.bench._metrics_frontend import metric_frontend_vs_hf
from w2vlab.model._demo import build_demo_model

KEPT_RUNS = sorted((Path(__file__).parents[1] / "artifacts" / "bench").glob("*.json"))

CORPUS_METRICS = ("corpus_pipeline_overhead", "corpus_bucketing_vs_one_by_one", "corpus_peak_rss_n_vs_10n")
# Every metric but Ray vs local (about 40 s of Ray start-up and actors here): Ray's embeddings are
# compared with the local engine's in tests/test_corpus_ray.py; its timing belongs to bench runs.
# Nor the reduced-precision candidates (a 40 s inductor compile here): tests/test_precision.py runs
# their builds, their child process and their quality measures on the tiny model.  Nor OpenVINO (an optional
# extra, NNCF's calibration): tests/test_bench_openvino.py runs that family alone.
MEASURED = [
    bench.metric_name(m)
    for m in bench.METRICS
    if bench.metric_name(m) not in ("corpus_ray_vs_local", "reduced_precision", "openvino")
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One ``--size tiny --quick --only <all but Ray>`` run through the CLI: (what it printed, the --json file)."""
    path = tmp_path_factory.mktemp("bench") / "b.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main(["--size", "tiny", "--quick", "--json", str(path), "--only", ",".join(MEASURED)]) == 0
    return json.loads(out.getvalue()), json.loads(path.read_text())


@pytest.mark.slow  # runs the benchmark but Ray (about 2-3 min on 2 cores)
def test_quick_tiny_run_produces_every_field(tiny):
    result, written = tiny
    assert result == written
    assert result["failed"] == {}
    assert result["threads"] == 2 and result["size"] == "tiny"
    expected = {
        "export_peak_rss",
        "frontend_vs_hf_10s",
        "frontend_vs_hf_60s",
        "frontend_busy_10s",
        "torchscript_vs_eager_10s",
        "waveform_artifact_vs_hf_plus_eager_10s",
        "encoder_flops_fraction",
        "time_to_first_embedding",
        "padded_batch_8_vs_one_by_one",
        "formats_vs_eager_10s",
        "fastest_artifact_vs_eager_10s",
        "onnx_rewrites_10s",
        "cpp_vs_python_first_embedding_10s",
        "allocator_eager_10s",
        *CORPUS_METRICS,
    }
    assert set(result["metrics"]) == expected and result["only"] == ["export_peak_rss", *MEASURED]
    assert set(result["wall_s"]) == {"export_peak_rss", *MEASURED}
    for name, row in result["metrics"].items():
        assert {"target", "met"} <= set(row), name
        if "ratio" in row:
            assert row["ratio"] > 0, name
    assert result["metrics"]["torchscript_vs_eager_10s"]["max_abs_diff"] == 0.0  # parity of what was timed
    rewrites = result["metrics"]["onnx_rewrites_10s"]
    if onnx_available():  # the artifact's (rewritten) ONNX files against the stock model's, same run
        assert set(rewrites["runs"]) == {"eager", "onnx", "onnx_stock", "onnx-int8", "onnx-int8_stock"}
        assert all(row["max_abs_diff"] <= 1e-5 for name, row in rewrites["runs"].items() if "int8" not in name)
        assert all(row["cosine"] >= 0.999 for row in rewrites["runs"].values())
    busy = result["metrics"]["frontend_busy_10s"]
    for side in ("consumer", "hf", "threads_2"):
        assert 0 < busy[side]["p50_s"] <= busy[side]["p90_s"], (side, busy[side])
    assert busy["consumer_p90_s"] == busy["consumer"]["p90_s"] and busy["frontend_threads"] == 1
    formats = result["metrics"]["formats_vs_eager_10s"]["formats"]
    assert list(formats) == list(ALL_FORMATS if onnx_available() else ("torchscript", "exported"))
    assert result["metrics"]["formats_vs_eager_10s"]["met"]
    assert formats["exported"]["max_abs_diff"] == 0.0
    for row in formats.values():
        assert {"s", "eager_s", "ratio_vs_eager", "cosine", "max_abs_diff", "bytes"} <= set(row)
    assert result["metrics"]["export_peak_rss"]["formats"] == list(formats)  # the artifact the formats came from
    flops = result["metrics"]["encoder_flops_fraction"]
    assert set(flops["fraction_of_best"]) == {"eager", *formats}
    assert flops["best_gemm_gflops"]["fp32"] == max(v for k, v in flops["best_gemm_gflops"].items() if k != "fp32")
    if onnx_available():  # ONNX Runtime's profile of the ONNX file: kernel time by op type, within the call's time
        profile = flops["onnx_profile"]
        assert "MatMul" in profile["by_op_s"] and sum(profile["share"].values()) == pytest.approx(1.0)
        assert 0 < profile["kernel_s"] <= 1.5 * profile["call_s"]
    assert set(result["artifact_sizes"]) == {
        "w2vbert_speaker_script_preprocessed.pt",
        "w2vbert_speaker_script_waveform.pt",
    }


@pytest.mark.slow  # runs the benchmark but Ray (about 2-3 min on 2 cores)
def test_allocator_row_times_both_settings_in_lockstep(tiny):
    row = tiny[0]["metrics"]["allocator_eager_10s"]
    runners = {"eager", "torchscript", *(["onnx"] if onnx_available() else [])}
    assert row["rounds"] == 3 + 2  # --quick: 3 repeats, plus 2
    assert row["applied"] == {"default": False, "keep_freed_memory": is_glibc()}  # as each child reported
    for setting in ("default", "keep_freed_memory"):
        assert set(row["seconds"][setting]) == set(row["minor_faults_per_call"][setting]) == runners
        assert set(row["ratio_vs_eager_same_setting"][setting]) == runners - {"eager"}
        assert all(faults >= 0 for faults in row["minor_faults_per_call"][setting].values())
    assert set(row["keep_vs_default_paired"]) == runners and row["met"] == (row["keep_vs_default_paired"]["eager"] < 1)


@pytest.mark.slow  # runs the benchmark but Ray (about 2-3 min on 2 cores)
def test_time_to_first_embedding_goes_through_the_consumer_alone(tiny):
    """Every file's first embedding (both modes, every format) is timed through load_artifact, and that
    process imports no exporter, eager model or HF modelling code."""
    result, _ = tiny
    first = result["metrics"]["time_to_first_embedding"]
    formats = list(result["metrics"]["formats_vs_eager_10s"]["formats"])
    files = {f"{mode} {fmt}" for mode in ("preprocessed", "waveform") for fmt in formats}
    assert {"fastest_s", "eager_s", "ratio", "eager_modules_loaded", "consumer", "seconds", "ratios"} <= set(first)
    assert set(first["seconds"]) == set(first["ratios"]) == set(first["peak_rss_bytes"]) == files
    assert first["fastest_s"] == min(first["seconds"].values()) == first["seconds"][first["fastest"]]
    assert first["ratio"] == first["fastest_s"] / first["eager_s"] == first["ratios"][first["fastest"]]
    assert set(first["consumer_modules_loaded"]) == set(first["consumer_heavy_modules"]) == files
    assert all(isinstance(n, int) and n > 0 for n in first["consumer_modules_loaded"].values())
    assert first["consumer_heavy_modules"] == {name: [] for name in files}


@pytest.mark.slow  # runs the benchmark but Ray (about 2-3 min on 2 cores)
def test_cpp_consumer_is_timed_against_the_python_one_on_the_same_file(tiny):
    result, _ = tiny
    row = result["metrics"]["cpp_vs_python_first_embedding_10s"]
    if "skipped" in row:  # only where the program cannot be built (tests/test_cpp_consumer.py skips too)
        pytest.skip(row["skipped"])
    assert row["cpp_s"] > 0 and row["python_s"] > 0 and row["ratio"] == row["cpp_s"] / row["python_s"]
    assert row["max_abs_diff"] <= 1e-5 and row["program_bytes"] > 0


@pytest.mark.slow  # runs the benchmark but Ray (about 2-3 min on 2 cores)
def test_corpus_metrics_report_both_sides_and_the_parity_of_what_was_timed(tiny):
    """Fields and parity only: whole pipeline vs model alone, bucketed vs one by one, RSS N vs 10N."""
    result, _ = tiny
    rows = {name: result["metrics"][name] for name in CORPUS_METRICS}
    overhead = rows["corpus_pipeline_overhead"]
    assert {
        "pipeline_s",
        "model_only_s",
        "overhead",
        "overhead_definition",
        "pipeline_audio_s_per_s",
        "model_only_audio_s_per_s",
    } <= set(overhead)
    assert overhead["overhead"] == pytest.approx(1 - overhead["model_only_s"] / overhead["pipeline_s"])
    assert "--size full" in overhead["target"]
    bucketed = rows["corpus_bucketing_vs_one_by_one"]
    assert bucketed["one_by_one_batches"] == bucketed["files"] == 24 > bucketed["batches"]  # --quick: 24 clips
    assert ">= 1.5" in bucketed["target"] and "--size tiny" in bucketed["target"]
    assert 0 < bucketed["audio_s"] <= 24 * 12
    assert all(row["max_abs_diff"] <= 1e-5 for row in (overhead, bucketed))
    rss = rows["corpus_peak_rss_n_vs_10n"]
    assert (rss["files_n"], rss["files_10n"]) == (24, 240) and rss["batches_10n"] > rss["batches_n"] > 1
    assert rss["peak_rss_n_bytes"] > 0 and rss["ratio"] == rss["peak_rss_10n_bytes"] / rss["peak_rss_n_bytes"]


def test_only_selects_metrics_by_name_and_keeps_the_export(capsys):
    assert bench.select_metrics(None) == bench.METRICS
    picked = bench.select_metrics(["corpus_peak_rss", "frontend_vs_hf", "export_peak_rss"])
    assert picked == (metric_frontend_vs_hf, metric_corpus_peak_rss)  # in METRICS order
    assert bench.select_metrics(["export_peak_rss"]) == ()  # the export alone
    with pytest.raises(ValueError, match="unknown metric.*no_such.*corpus_ray_vs_local"):
        bench.select_metrics(["no_such"])
    with pytest.raises(SystemExit):
        bench.main(["--only", "no_such"])
    assert "unknown metric" in capsys.readouterr().err


def test_a_failing_metric_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch, caplog):
    """A metric that raises (a child killed for memory, say) is listed under "failed" and the next one
    runs; --json holds each finished metric before the next starts, and the exit status says it."""
    path, seen = tmp_path / "b.json", []

    def metric_boom(ctx):
        raise RuntimeError("benchmark child failed (-9)")

    def metric_fine(ctx):
        seen.append(json.loads(path.read_text()))  # what --json held when this metric started
        return {"fine": {"target": "-", "met": True}}

    monkeypatch.setattr(bench, "METRICS", (metric_boom, metric_fine))
    monkeypatch.setattr(bench, "metric_export_peak_rss", lambda ctx: {"export_peak_rss": {"target": "-", "met": True}})
    with contextlib.redirect_stdout(io.StringIO()):
        assert bench.main(["--size", "tiny", "--quick", "--json", str(path)]) == 1
    written = json.loads(path.read_text())
    assert written["failed"] == {"boom": "RuntimeError: benchmark child failed (-9)"}
    assert set(written["metrics"]) == {"export_peak_rss", "fine"} and set(written["wall_s"]) >= {"boom", "fine"}
    assert seen[0]["failed"] == written["failed"] and "fine" not in seen[0]["metrics"]
    logged = [r.getMessage() for r in caplog.records if r.name == "w2vlab.bench._harness"]
    assert "bench: boom (1 of 2)" in logged and "bench: boom failed" in logged
    assert logged[-1] == "bench: 1 metric(s) failed: boom"
    assert not list(tmp_path.glob(".*"))  # no temporary file left beside the JSON


def test_reuse_measures_an_earlier_runs_artifact_without_exporting(
    tmp_path, tiny_dir, tiny_all_formats, monkeypatch, capsys
):
    """--reuse --workdir: a metric of a kept run's artifact in seconds, without a second export; refused,
    naming what is missing, where no earlier run left its files."""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(tiny_dir, work / "demo_tiny")
    shutil.copytree(tiny_all_formats[0], work / "artifact_tiny")
    monkeypatch.setattr(bench, "metric_export_peak_rss", lambda ctx: pytest.fail("exported again"))
    path = tmp_path / "b.json"
    with contextlib.redirect_stdout(io.StringIO()):
        assert (
            bench.main(
                [
                    "--size",
                    "tiny",
                    "--quick",
                    "--workdir",
                    str(work),
                    "--reuse",
                    "--only",
                    "frontend_vs_hf",
                    "--json",
                    str(path),
                ]
            )
            == 0
        )
    result = json.loads(path.read_text())
    assert result["reused"] == str(work) and result["only"] == ["frontend_vs_hf"] and result["failed"] == {}
    assert set(result["metrics"]) == {"frontend_vs_hf_10s", "frontend_vs_hf_60s"}
    assert result["metrics"]["frontend_vs_hf_10s"]["torch_frontend_s"] > 0
    for argv, message in (
        (["--reuse"], "--reuse needs --workdir"),
        (["--reuse", "--workdir", str(tmp_path / "empty")], "missing: .*demo_tiny"),
    ):
        with pytest.raises(SystemExit):
            bench.main(["--size", "tiny", *argv])
        assert re.search(message, capsys.readouterr().err)


def test_child_dispatcher_and_failure_message(tmp_path, capsys):
    assert bench_child.main(["no_such_child"]) == 2
    assert "usage" in capsys.readouterr().err
    failed = r"(?s)benchmark child failed \(1\): first_embedding_artifact .*FileNotFoundError"  # + stderr tail
    with pytest.raises(RuntimeError, match=failed):
        procs.run_child(
            "first_embedding_artifact",
            tmp_path / "missing",
            "preprocessed",
            "torchscript",
            tmp_path / "w.npy",
            1,
            env=procs.child_env(1),
        )
    assert procs.child_env(3)["OMP_NUM_THREADS"] == "3"


@pytest.mark.parametrize("pruned", [False, True])
def test_flop_formula_agrees_with_torch_flop_counter(pruned):
    """The analytic count (used for FLOP/s) against torch's own operator-level FLOP counter."""
    model, _ = build_demo_model(pruned=pruned)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 300, 160))
    counted = counter.get_total_flops()
    assert encoder_flops(flop_facts(model), frames=300) == pytest.approx(counted, rel=0.05)


def test_children_import_this_copy_of_w2vlab():
    """The first entry of a child's path is the folder holding the w2vlab package that started it (the
    checkout here, site-packages in a wheel install)."""
    first = Path(procs.child_env(1)["PYTHONPATH"].split(os.pathsep)[0])
    assert first / "w2vlab" / "__init__.py" == Path(w2vlab.__file__).resolve()


def test_metric_row_divides_first_side_by_second_and_refuses_clashing_names():
    row = metric_row("fast_s", 1.0, "slow_s", 4.0, "<= 0.5", True, note="x")
    assert row == {"fast_s": 1.0, "slow_s": 4.0, "ratio": 0.25, "target": "<= 0.5", "met": True, "note": "x"}
    assert list(row)[:5] == ["fast_s", "slow_s", "ratio", "target", "met"]  # the JSON's key order
    assert metric_row("a", 1.0, "b", 0.0, "-", False)["ratio"] == float("inf")
    for args, extra in ((("ratio", 1.0, "b", 2.0), {}), (("a", 1.0, "a", 2.0), {}), (("x", 1.0, "y", 2.0), {"x": 3})):
        with pytest.raises(ValueError, match="expected distinct names"):
            metric_row(*args, "-", True, **extra)


def test_trials_must_name_a_directory_with_trials_and_audio(tmp_path, capsys):
    (tmp_path / "trials.txt").write_text("a b target\n")
    with pytest.raises(SystemExit):
        bench.main(["--size", "tiny", "--trials", str(tmp_path)])
    assert re.search(
        r"--trials .*expected a directory with trials.txt and wav.scp.*missing: wav.scp", capsys.readouterr().err
    )


@pytest.mark.parametrize("path", KEPT_RUNS, ids=lambda p: p.name)
def test_kept_runs_are_still_drawn(path):
    """Every JSON file kept in artifacts/bench/ still reads through the plots' row type."""
    from w2vlab.lab._plots import plot_bench

    result = json.loads(path.read_text())
    *ratio_panels, _ = plot_bench(result).axes  # lower-is-better and higher-is-better panels, then latency
    with_ratio = [name for name, row in result["metrics"].items() if isinstance(row, dict) and "ratio" in row]
    drawn = [t.get_text() for ax in ratio_panels for t in ax.get_yticklabels()]
    title = plot_bench(result)._suptitle.get_text()
    not_drawn = title.split("not drawn (no target direction): ")[1].split(", ") if "not drawn" in title else []
    assert sorted(drawn + not_drawn) == sorted(with_ratio)
