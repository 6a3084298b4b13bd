"""Parity bounds that scale with the embedding (issue #26, 1b).

The tiny demo's bottleneck (the last linear layer) is scaled so that its embeddings have norms of
0.1 to 100: a trained speaker model's are 10-20, the demo's about 1.  Every correct export must
pass at every scale, and a candidate off by a relative 1e-3 must fail at every scale.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from w2vlab._contract import ALL_FORMATS, FILES, MODES, PARITY_FILE, onnx_available
from w2vlab._features import extractor_inputs
from w2vlab.export._pipeline import export
from w2vlab.export._suite import build_suite, synthetic_speech, verify
from w2vlab.model._checkpoint import HEAD_WEIGHTS, feature_extractor_for, load_speaker_encoder
from w2vlab.model._demo import write_demo_checkpoint

NORMS = (0.1, 1.0, 15.0, 100.0)
# A short clip, an odd frame count, a longer clip and a padded batch: the kinds of case of the suites.
CASES = build_suite(lengths=(560, 16160, 40037), batches=((16160, 8000, 561),))


def _embedding_norm(model_dir: Path) -> float:
    """The eager embedding's L2 norm on a 2 s clip, computed here (HF extractor + eager model)."""
    loaded = load_speaker_encoder(model_dir)
    with torch.inference_mode():
        inputs = extractor_inputs(feature_extractor_for(loaded), (synthetic_speech(32000, seed=5),))
        return float(loaded.model(*inputs).norm(dim=1)[0])


def scaled_checkpoint(directory: Path, norm: float) -> Path:
    """The tiny demo with its bottleneck's weight and bias multiplied so that embeddings have about ``norm``."""
    ckpt = write_demo_checkpoint(directory)
    factor = norm / _embedding_norm(ckpt)
    head = load_file(str(ckpt / HEAD_WEIGHTS))
    for name in ("bottleneck.weight", "bottleneck.bias"):  # embedding = W x + b: both scale it by factor
        head[name] = head[name] * factor
    save_file(head, str(ckpt / HEAD_WEIGHTS), metadata={"format": "pt"})
    return ckpt


@pytest.fixture(scope="module", params=NORMS, ids=lambda n: f"norm{n:g}")
def scaled(request, tmp_path_factory) -> tuple[float, Path]:
    return request.param, scaled_checkpoint(tmp_path_factory.mktemp("scaled") / "ckpt", request.param)


def test_the_checkpoint_has_the_scale_asked_for(scaled):
    norm, ckpt = scaled
    assert _embedding_norm(ckpt) == pytest.approx(norm, rel=1e-4)
    other = load_speaker_encoder(ckpt)
    with torch.inference_mode():  # another clip: the norm is a property of the model, not of one clip
        inputs = extractor_inputs(feature_extractor_for(other), (synthetic_speech(16160, seed=9),))
        assert 0.3 * norm < float(other.model(*inputs).norm()) < 3 * norm


def test_correct_exports_pass_at_every_scale(scaled, tmp_path):
    """Both modes exported and verified: passes, the preprocessed archive still exact (0, not small)."""
    norm, ckpt = scaled
    result = export(ckpt, tmp_path / "art", modes=MODES, cases=CASES, progress=False)
    pre, wave = result.reports["preprocessed"], result.reports["waveform"]
    assert pre.passed and wave.passed, (pre.headline(), wave.headline())
    assert {(c.max_abs_diff, c.max_rel_diff) for c in pre.clips} == {(0.0, 0.0)}  # same graph, same kernels
    assert 0.0 < wave.worst_max_rel_diff <= 3e-5  # waveform: another frontend's rounding, now relative
    if norm >= 100:  # rounding grows with the values: the old absolute bound (1e-5) refused this correct export
        assert wave.worst_max_abs_diff > 1e-5, wave.headline()
    for c in wave.clips:
        assert 0.05 * norm < c.max_abs_ref < norm  # max|ref| of a 32-d embedding of norm ~``norm``
    parity = json.loads((result.output / PARITY_FILE).read_text())
    for mode in MODES:
        assert parity[mode]["bounded"] == (
            "cosine >= 0.99999, relative max|diff| (max|ref - cand| / max|ref|) <= 3.0e-05 per clip"
        )
        entry = result.metadata["artifacts"][mode]["formats"]["torchscript"]["parity"]
        assert entry["bounded"] == parity[mode]["bounded"] and entry["worst_max_abs_diff"] >= 0.0
    card = (result.output / "README.md").read_text()
    assert "relative max\\|diff\\| (max\\|ref - cand\\| / max\\|ref\\|) <= 3.0e-05 per clip" in card


def _off_by(module: torch.nn.Module, rel: float):
    """``module``'s output with every value moved by ``rel`` times the row's max|value|: a relative error of ``rel``."""

    def perturbed(*inputs: torch.Tensor) -> torch.Tensor:
        out = module(*inputs)
        return out + rel * out.abs().amax(dim=1, keepdim=True)

    return perturbed


@pytest.mark.parametrize("mode", MODES)
def test_a_relative_error_of_1e_3_fails_at_every_scale(scaled, tmp_path, mode):
    """The same artifact, exact (preprocessed) or within bounds (waveform), off by a relative 1e-3: every
    clip fails on its relative max|diff| although its cosine stays within bounds."""
    norm, ckpt = scaled
    export(ckpt, tmp_path / "art", modes=(mode,), cases=CASES[:1], progress=False)
    module = torch.jit.load(str(tmp_path / "art" / FILES["torchscript", mode])).eval()
    loaded = load_speaker_encoder(ckpt)
    fe = feature_extractor_for(loaded)
    assert verify(mode, module, loaded.model, fe, CASES, progress=False).passed
    report = verify(mode, _off_by(module, 1e-3), loaded.model, fe, CASES, progress=False)
    assert len(report.failures) == len(report.clips), report.headline()
    assert report.worst_cosine >= 0.99999  # caught by the relative bound, not by the cosine
    assert all(c.max_rel_diff == pytest.approx(1e-3, rel=0.05) for c in report.clips)


@pytest.mark.slow
@pytest.mark.skipif(not onnx_available(), reason="needs the [onnx] extra")
@pytest.mark.parametrize("norm", (0.1, 100.0))
def test_every_format_passes_at_the_extreme_scales(tmp_path, norm):
    """Every format but AOTInductor's (a C++ compile) at the smallest and largest scale: each file within
    its format's bounds (about 40 s each on 2 cores)."""
    ckpt = scaled_checkpoint(tmp_path / "ckpt", norm)
    result = export(ckpt, tmp_path / "art", modes=MODES, formats=ALL_FORMATS, cases=CASES, progress=False)
    assert all(r.passed for r in result.all_reports)
    assert len(result.all_reports) == len(MODES) * len(ALL_FORMATS)
