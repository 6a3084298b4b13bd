"""Reduced-precision candidates (:mod:`w2vlab.export._precision`): each cheap recipe against the eager model,
the benchmark child that builds and times one, and how the benchmark judges parity and decisions.

``bf16-inductor`` is built only by the benchmark (``--only reduced_precision``): its inductor
compile takes about 40 s even for the tiny model."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from w2vlab._contract import onnx_available
from w2vlab._parity import INT8_BOUNDS, compare
from w2vlab.bench._context import BenchContext
from w2vlab.bench._flops import ceiling_for, gemm_ceilings
from w2vlab.bench._metrics_precision import precision_inputs, precision_quality
from w2vlab.bench._procs import child_env, run_child_report
from w2vlab.corpus._trials import compare_embeddings, read_trials
from w2vlab.export._precision import RECIPES, build, load_inputs, save_inputs
from w2vlab.export._suite import synthetic_speech
from w2vlab.model._checkpoint import feature_extractor_for, load_speaker_encoder

CORPUS = Path(__file__).parent / "data" / "corpus"  # the corpus notebook's trials: what --trials gets in a checkout


@pytest.fixture(scope="module")
def eager(tiny_dir):
    loaded = load_speaker_encoder(tiny_dir)
    fe = feature_extractor_for(loaded)
    out = fe(synthetic_speech(3 * 16000, seed=4), sampling_rate=16000, return_tensors="pt")
    return loaded.model, out["input_features"]  # [1, T, 160]


@pytest.mark.parametrize("recipe", ["bf16", "onnx-int8"])
def test_recipe_runners_track_the_eager_model(recipe, eager, tiny_all_formats, tmp_path):
    model, feats = eager
    art, formats, _ = tiny_all_formats
    if recipe == "onnx-int8" and "onnx" not in formats:
        pytest.skip("the [onnx] extra is not installed")
    runners, build_s = build(recipe, model if recipe == "bf16" else None, art, tmp_path, 1, feats)
    assert build_s >= 0 and set(runners) == ({"onnx-int8", "onnx-int8-spin"} if recipe == "onnx-int8" else {"bf16"})
    with torch.inference_mode():
        want = model(feats)
        for name, run in runners.items():
            got = run(feats)
            assert got.dtype == torch.float32 and got.shape == want.shape, name
            report = compare(want, got, bounds=INT8_BOUNDS)
            assert report.passed and report.worst_max_abs_diff > 0, (name, report.headline())  # close, not a copy
    assert next(model.parameters()).dtype == torch.float32  # bf16 works on a copy


def test_unknown_recipe_and_missing_model_are_refused(eager, tmp_path):
    _, feats = eager
    with pytest.raises(ValueError, match="unknown recipe 'fp8'.*bf16-inductor"):
        build("fp8", None, tmp_path, tmp_path, 1, feats)
    with pytest.raises(ValueError, match="'bf16' builds from the fp32 model"):
        build("bf16", None, tmp_path, tmp_path, 1, feats)
    assert set(RECIPES) == {"onnx-int8", "bf16", "bf16-inductor"}


def test_child_builds_times_and_embeds_every_input(eager, tiny_dir, tiny_all_formats, tmp_path):
    """The benchmark's child for ``bf16``: a fresh interpreter that times the recipe against eager
    and saves its embedding of every input, which the parent compares with its own eager ones."""
    model, feats = eager
    inputs = {"clip10": feats, "synth_560": feats[:, :1], "utt:x": feats[:, :40]}
    save_inputs(tmp_path / "in.npz", inputs)
    assert {k: v.shape for k, v in load_inputs(tmp_path / "in.npz").items()} == {k: v.shape for k, v in inputs.items()}
    child = run_child_report(
        "precision_candidate",
        "bf16",
        tiny_dir,
        tiny_all_formats[0],
        tmp_path / "in.npz",
        tmp_path / "out.npz",
        1,
        1,
        env=child_env(1),
    )
    report = child.report
    assert set(report["s"]) == {"bf16"} and report["s"]["bf16"] > 0 and report["eager_s"] > 0
    assert 0 < report["build_peak_rss_bytes"] <= child.peak_rss_bytes
    with np.load(tmp_path / "out.npz") as data, torch.inference_mode():
        assert set(data.files) == set(inputs)
        for name, x in inputs.items():
            assert compare(model(x), data[name], bounds=INT8_BOUNDS).passed, name


def test_quality_holds_short_clips_to_their_bound_and_counts_flips():
    """Parity uses the int8 bounds (0.998 under 0.5 s, else 0.999); flips are those of
    :func:`w2vlab.corpus._trials.compare_embeddings` on the corpus notebook's trials."""
    trials = read_trials(CORPUS / "trials.txt")
    keys = sorted({k for trial in zip(trials.enroll, trials.test) for k in trial})
    rng = np.random.default_rng(0)
    unit = lambda: (lambda v: v / np.linalg.norm(v))(rng.standard_normal(16))  # noqa: E731
    ref = {f"utt:{k}": unit() for k in keys} | {"synth_560": unit(), "clip10": unit()}
    samples = {"synth_560": 560, "clip10": 160000}

    def tilted(v: np.ndarray, cosine: float) -> np.ndarray:  # as long as v, at ``cosine`` from it
        other = rng.standard_normal(v.shape)
        other -= other @ v / (v @ v) * v
        return cosine * v + np.sqrt(1 - cosine**2) * np.linalg.norm(v) * other / np.linalg.norm(other)

    same = precision_quality(ref, dict(ref), samples, trials)
    assert same["parity_passed"] and same["flips"] == 0 and same["max_score_diff"] < 1e-12
    short_off = dict(ref, synth_560=tilted(ref["synth_560"], 0.9985))
    assert precision_quality(ref, short_off, samples, trials)["parity_passed"]  # 0.9985 >= 0.998 under 0.5 s
    long_off = dict(ref, clip10=tilted(ref["clip10"], 0.9985))
    assert not precision_quality(ref, long_off, samples, trials)["parity_passed"]  # < 0.999 on 10 s
    swapped = dict(ref, **{f"utt:{keys[0]}": -ref[f"utt:{keys[0]}"]})
    quality = precision_quality(ref, swapped, samples, trials)
    strip = lambda emb: {k.removeprefix("utt:"): v for k, v in emb.items() if k.startswith("utt:")}  # noqa: E731
    assert quality["flips"] == compare_embeddings(strip(ref), strip(swapped), trials).n_flips > 0


def test_gemm_ceilings_cover_each_arithmetic():
    ceilings = gemm_ceilings(64, 32, 64, threads=1, repeats=1)
    assert {"fp32", "fp32_torch", "fp32_numpy", "bf16"} <= set(ceilings) and ceilings["bf16"] > 0
    assert ("fp32_onnxruntime" in ceilings) == onnx_available()
    assert ceilings["fp32"] == max(v for k, v in ceilings.items() if k.startswith("fp32_")) > 0
    assert ceilings.get("int8", 1.0) > 0 and ("int8" in ceilings) != ("int8_error" in ceilings)
    assert [ceiling_for(n) for n in ("onnx-int8-spin", "bf16-inductor", "onnx")] == ["int8", "bf16", "fp32"]


def test_trial_utterances_come_from_the_trials_directory_passed_in(tiny_dir, tmp_path, caplog):
    """``--trials DIR``: its wav.scp's utterances join the parity clips and its trials.txt is read; without
    it, the synthetic clips alone, no trials, and a note that flips are not counted."""
    shutil.copytree(tiny_dir, tmp_path / "demo_tiny")
    keys = [line.split()[0] for line in (CORPUS / "wav.scp").read_text().splitlines() if line.strip()]
    feats, samples, trials = precision_inputs(BenchContext("tiny", True, 1, tmp_path, CORPUS))
    assert sorted(k.removeprefix("utt:") for k in feats if k.startswith("utt:")) == sorted(keys)
    assert len(trials) == len(read_trials(CORPUS / "trials.txt")) and set(samples) == set(feats)
    assert all(x.shape[0] == 1 and x.shape[2] == 160 for x in feats.values())
    with caplog.at_level(logging.INFO, logger="w2vlab.bench"):
        alone, _, none = precision_inputs(BenchContext("tiny", True, 1, tmp_path))
    assert none is None and set(alone) == {k for k in feats if not k.startswith("utt:")}
    assert any("--trials" in r.getMessage() for r in caplog.records)
