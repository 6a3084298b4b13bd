"""torch.export programs (.pt2): reloaded from disk, compared with HF extractor + eager model."""

from __future__ import annotations

import pytest
import torch
from transformers import SeamlessM4TFeatureExtractor

from w2vlab.demo import W2VBERT_PREPROCESSOR, build_demo_model
from w2vlab.formats import PROGRAM_FILES, export_program, load_program
from w2vlab.parity import compare
from w2vlab.suite import Case, build_suite, hf_features, synthetic_speech, waveform_batch

FE = SeamlessM4TFeatureExtractor(**W2VBERT_PREPROCESSOR)


def _load(model, mode, directory):
    return load_program(export_program(model, mode, FE, directory / PROGRAM_FILES[mode]), mode)


@pytest.fixture(scope="module", params=[False, True], ids=["dense", "pruned"])
def preprocessed(request, tmp_path_factory):
    model, _ = build_demo_model(pruned=request.param)
    return model, _load(model, "preprocessed", tmp_path_factory.mktemp("pt2"))


@pytest.fixture(scope="module")
def waveform(tmp_path_factory):
    model, _ = build_demo_model()
    return model, _load(model, "waveform", tmp_path_factory.mktemp("pt2"))


def test_preprocessed_program_is_exact_at_batch_one(preprocessed):
    model, program = preprocessed
    with torch.inference_mode():
        for frames in (1, 2, 3, 49, 50, 123, 777, 1500):  # 1 row: a 560-sample clip
            x = torch.randn(1, frames, 160)
            assert torch.equal(program(x), model(x)), frames


def test_preprocessed_program_padded_batch_matches_clips_alone(preprocessed):
    model, program = preprocessed
    case = Case("batch", tuple(synthetic_speech(n, seed=i) for i, n in enumerate((16160, 561, 40080, 8000))))
    with torch.inference_mode():
        together = program(*hf_features(FE, case))
        alone = torch.cat([model(*hf_features(FE, Case("one", (w,)))) for w in case.waves])
    assert compare(alone, together).passed


def test_waveform_program_matches_hf_plus_eager(waveform):
    model, program = waveform
    cases = build_suite(lengths=(1040, 16160, 48037), batches=((16160, 8000, 561),))
    with torch.inference_mode():
        want = torch.cat([model(*hf_features(FE, c)) for c in cases])
        got = torch.cat([program(*waveform_batch(c)) for c in cases])
    report = compare(want, got)
    assert report.worst_cosine >= 0.99999 and report.worst_max_abs_diff <= 1e-5, report


def test_waveform_program_refuses_what_it_cannot_run(waveform):
    _, program = waveform
    with pytest.raises(ValueError, match="at least 1040 samples"):
        program(torch.randn(1, 600) * 0.1)


@pytest.mark.xfail(strict=True, raises=torch._dynamo.exc.UserError, reason="known limit: torch.export cannot prove the pruned "
                   "student's row count is never 1 (guard 1 % (1 + (N - 400) // 320) != 0)")
def test_pruned_waveform_program(tmp_path):
    model, _ = build_demo_model(pruned=True)
    export_program(model, "waveform", FE, tmp_path / "w.pt2")
