"""Parity numbers against hand-computed values; every bad input raises a ValueError that says why."""

import json
import math

import numpy as np
import pytest
import torch

from w2vlab._parity import ClipParity, ParityBounds, ParityReport, as_matrix, compare, format_bounds, merge_reports


@pytest.fixture
def embeddings() -> torch.Tensor:
    return torch.randn(4, 16, generator=torch.Generator().manual_seed(0))  # (N, D)


def test_identical_inputs_are_exact(embeddings):
    report = compare(embeddings, embeddings.clone())
    assert [c.name for c in report.clips] == ["clip0", "clip1", "clip2", "clip3"]
    for c in report.clips:
        assert (c.cosine, c.l2, c.max_abs_diff, c.max_rel_diff) == (1.0, 0.0, 0.0, 0.0)  # exact: nothing to round
    assert report.passed and report.failures == ()


def test_cosine_matches_hand_computed_values():
    report = compare([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], np.array([[0.0, 1.0], [1.0, 1.0], [-2.0, 0.0]]))
    cosines = [c.cosine for c in report.clips]
    assert cosines == pytest.approx([0.0, 1 / math.sqrt(2), -1.0], abs=1e-15)
    assert report.clips[1].l2 == pytest.approx(1.0, abs=1e-15)  # ||[0, -1]||
    assert report.clips[2].max_abs_diff == pytest.approx(3.0, abs=1e-15)
    assert [c.max_rel_diff for c in report.clips] == pytest.approx([1.0, 1.0, 3.0], abs=1e-15)  # max|ref| is 1
    assert report.worst_cosine == pytest.approx(-1.0) and report.failures == ("clip0", "clip1", "clip2")


def test_known_perturbation_fails_only_its_row(embeddings):
    candidate = embeddings.double().clone()
    candidate[2, 5] += 1e-3
    report = compare(embeddings, candidate, names=["a", "b", "c", "d"], label="perturbed")
    assert report.failures == ("c",) and not report.passed
    bad = report.clips[2]
    assert bad.max_abs_diff == pytest.approx(1e-3, rel=1e-9)  # float64 throughout
    assert bad.l2 == pytest.approx(1e-3, rel=1e-9)
    assert report.worst_max_abs_diff == bad.max_abs_diff
    assert all(c.passed(report.bounds) for i, c in enumerate(report.clips) if i != 2)


def test_inputs_accepted_in_every_form(embeddings):
    as_list = [row for row in embeddings]  # N x [D]
    as_rows = [row[None] for row in embeddings.numpy()]  # N x [1, D]
    for candidate in (embeddings.numpy(), as_list, as_rows, embeddings.tolist()):
        assert compare(embeddings, candidate).worst_max_abs_diff == 0.0
    assert as_matrix(embeddings).dtype == np.float64


def test_bounds_decide():
    ref = [[2.0, 0.0]]  # max|ref| = 2: a max|diff| of 4e-4 is 2e-4 of it
    assert compare(ref, [[2.0, 4e-4]], bounds=ParityBounds(min_cosine=0.999, max_rel_diff=1e-3)).passed
    assert not compare(ref, [[2.0, 4e-4]]).passed  # default: max|diff| / max|ref| <= 3e-5
    assert compare(ref, [[2.0, 4e-5]]).passed  # 2e-5 relative
    assert not compare(ref, [[2.0, 4e-5]], bounds=ParityBounds(max_abs_diff=1e-5)).passed  # an absolute bound too
    assert compare(ref, [[2.0, 4e-4]], bounds=ParityBounds(max_rel_diff=None, max_abs_diff=1e-3)).passed
    exact = ParityBounds(max_rel_diff=0.0)
    assert compare(ref, ref, bounds=exact).passed and not compare(ref, [[2.0, 1e-300]], bounds=exact).passed
    with pytest.raises(ValueError, match="min_cosine"):
        ParityBounds(min_cosine=1.5)
    for name in ("max_rel_diff", "max_abs_diff"):
        with pytest.raises(ValueError, match=f"{name}=-1.0; expected a non-negative number"):
            ParityBounds(**{name: -1.0})
        with pytest.raises(ValueError, match=name):
            ParityBounds(**{name: float("nan")})


@pytest.mark.parametrize("rel_error, passes", [(1e-5, True), (1e-3, False)])
def test_verdict_does_not_depend_on_the_embedding_scale(embeddings, rel_error, passes):
    """Both sides multiplied by one factor: max|diff| scales with it, the relative max|diff| and cosine
    do not, and neither does the verdict of the default bounds."""
    ref = embeddings.double().numpy()
    noise = np.random.default_rng(1).uniform(-1.0, 1.0, ref.shape)
    cand = ref + rel_error * np.abs(ref).max(axis=1, keepdims=True) * noise  # max|diff| / max|ref| <= rel_error
    base = compare(ref, cand)
    assert base.worst_max_rel_diff == pytest.approx(rel_error, rel=0.1)  # the worst of 64 uniform draws
    for scale in (1e-3, 0.1, 1.0, 15.0, 100.0, 1e4):
        report = compare(scale * ref, scale * cand)
        assert report.passed is passes, (scale, report.headline())
        assert report.worst_max_abs_diff == pytest.approx(scale * base.worst_max_abs_diff, rel=1e-9)
        for c, b in zip(report.clips, base.clips):
            assert c.max_rel_diff == pytest.approx(b.max_rel_diff, rel=1e-9)
            assert c.cosine == pytest.approx(b.cosine, abs=1e-15)
    absolute = ParityBounds(max_rel_diff=None, max_abs_diff=1e-5)  # the old default: depends on the scale
    assert [compare(s * ref, s * cand, bounds=absolute).passed for s in (1e-3, 1e4)] == [True, False]


def test_the_issue_s_norm_15_export_passes():
    """Issue #26: a trained student's embedding (norm 15) off by 2e-5 in one value, cosine 1 - 3.5e-11:
    a correct export that the old absolute bound (1e-5) refused; a relative error of 1e-3 still fails."""
    ref = np.random.default_rng(0).standard_normal((1, 256))
    ref *= 15.0 / np.linalg.norm(ref)
    cand = ref.copy()
    cand[0, 7] += 2e-5
    report = compare(ref, cand)
    assert report.passed and report.worst_max_abs_diff == pytest.approx(2e-5, rel=1e-6)
    assert 1.0 - report.worst_cosine < 1e-10
    assert not compare(ref, cand, bounds=ParityBounds(max_rel_diff=None, max_abs_diff=1e-5)).passed
    off = ref + 1e-3 * np.abs(ref).max()
    assert not compare(ref, off).passed


def test_short_clips_have_their_own_cosine_bound():
    """A clip under ``short_clip_samples`` is held to ``short_clip_min_cosine``; longer ones, and
    clips of unknown length, to ``min_cosine``."""
    bounds = ParityBounds(
        min_cosine=0.999, max_rel_diff=None, max_abs_diff=1.0, short_clip_samples=8000, short_clip_min_cosine=0.99
    )
    angle = np.arccos(0.995)  # every candidate row at cosine 0.995 from its reference
    ref, cand = [[1.0, 0.0]] * 3, [[np.cos(angle), np.sin(angle)]] * 3
    names = ["short", "long", "longer"]
    report = compare(ref, cand, names=names, bounds=bounds, num_samples=[7999, 8000, 160000])
    assert report.failures == ("long", "longer")
    assert [c.num_samples for c in report.clips] == [7999, 8000, 160000]
    assert compare(ref, cand, names=names, bounds=bounds).failures == tuple(names)  # lengths unknown: the main bound
    assert "cosine >= 0.999 (>= 0.99 under 8000 samples), max|diff| <= 1e+00" in report.headline()
    with pytest.raises(ValueError, match="2 clip lengths for 3 embeddings"):
        compare(ref, cand, bounds=bounds, num_samples=[1, 2])
    with pytest.raises(ValueError, match="short_clip_min_cosine"):
        ParityBounds(short_clip_min_cosine=2.0)
    with pytest.raises(ValueError, match="short_clip_samples"):
        ParityBounds(short_clip_samples=-1)


def test_int8_bounds_keep_their_short_clip_bound():
    b = format_bounds("onnx-int8", "waveform")
    assert (b.min_cosine, b.short_clip_samples, b.short_clip_min_cosine) == (0.999, 8000, 0.998)
    assert format_bounds("onnx", "preprocessed").short_clip_samples == 0
    assert b.max_rel_diff == 0.3 and b.max_abs_diff is None  # int8: judged by cosine, max|diff| loosely bounded


def test_format_bounds_loosen_only_what_they_name():
    assert format_bounds("torchscript", "waveform") == ParityBounds() == format_bounds("aoti", "preprocessed")
    assert format_bounds("onnx", "preprocessed") == ParityBounds()
    onnx_wave = format_bounds("onnx", "waveform")
    assert (onnx_wave.min_cosine, onnx_wave.max_rel_diff) == (0.99999, 3e-4)
    assert format_bounds("onnx", "waveform", ParityBounds(max_rel_diff=None)).max_rel_diff is None  # never tighter
    assert format_bounds("onnx", "waveform", ParityBounds(max_rel_diff=0.0)).max_rel_diff == 3e-4
    loose = format_bounds("onnx-int8", "preprocessed", ParityBounds(min_cosine=0.99))
    assert (loose.min_cosine, loose.short_clip_min_cosine) == (0.99, 0.99)  # never tighter on short clips


def test_zero_rows():
    report = compare([[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]])
    assert [c.cosine for c in report.clips] == [1.0, 0.0]
    assert [c.max_rel_diff for c in report.clips] == [0.0, math.inf]  # a zero reference: any difference is infinite


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        compare(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"reference: expected 2-D .*\(3,\)"):
        compare(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="at least one row"):
        compare(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="2 names for 3 embeddings"):
        compare(np.ones((3, 2)), np.ones((3, 2)), names=["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        compare(np.ones((2, 2)), np.ones((2, 2)), names=["a", "a"])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_never_passes(embeddings, bad):
    candidate = embeddings.clone()
    candidate[1, 0] = bad
    candidate[3, 7] = bad
    with pytest.raises(ValueError, match=r"candidate has NaN/Inf in rows \[1, 3\] \(clip1, clip3\)"):
        compare(embeddings, candidate)
    with pytest.raises(ValueError, match=r"reference has NaN/Inf in rows \[1, 3\].*candidate has NaN/Inf"):
        compare(candidate, candidate)


def test_to_dict_is_json_and_markdown_has_one_row_per_clip(embeddings):
    """Summary and per-clip values against a known perturbation, computed here with numpy."""
    reference = embeddings.double().numpy()
    candidate = reference.copy()
    offsets = [
        1e-6,
        2e-6,
        3e-6,
        1e-3,
    ]  # one entry of row i moved by offsets[i]: clip3 breaks max|diff|/max|ref| <= 3e-5
    max_ref = np.abs(reference).max(axis=1)  # each row's max|ref|: 1.3-2.2 for these rows
    for i, delta in enumerate(offsets):
        candidate[i, i] += delta
    report = compare(embeddings, candidate, label="eager vs script")
    d = json.loads(json.dumps(report.to_dict()))
    cosines = [float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) for a, b in zip(reference, candidate)]
    assert d["clips"] == [
        {
            "name": f"clip{i}",
            "cosine": pytest.approx(cosines[i], abs=1e-14),
            "l2": pytest.approx(delta, rel=1e-6),
            "max_abs_diff": pytest.approx(delta, rel=1e-6),
            "num_samples": None,
            "max_abs_ref": max_ref[i],
            "max_rel_diff": pytest.approx(delta / max_ref[i], rel=1e-6),
        }
        for i, delta in enumerate(offsets)
    ]
    summary = {
        "label": "eager vs script",
        "n_clips": 4,
        "passed": False,
        "failures": ["clip3"],
        "worst_cosine": pytest.approx(min(cosines), abs=1e-14),
        "worst_l2": pytest.approx(1e-3, rel=1e-6),
        "worst_max_abs_diff": pytest.approx(1e-3, rel=1e-6),
        "worst_max_rel_diff": pytest.approx(1e-3 / max_ref[3], rel=1e-6),
        "bounded": "cosine >= 0.99999, relative max|diff| (max|ref - cand| / max|ref|) <= 3.0e-05 per clip",
        "bounds": {
            "min_cosine": 0.99999,
            "max_rel_diff": 3e-5,
            "short_clip_samples": 0,
            "short_clip_min_cosine": 1.0,
            "max_abs_diff": None,
        },
    }
    assert report.summary() == summary
    assert {k: v for k, v in d.items() if k != "clips"} == summary
    text = str(report)
    assert text.startswith("**eager vs script**: FAIL (4 clips")
    rows = [line for line in text.splitlines() if line.startswith("| clip")]
    assert len(rows) == 1 + 4  # header + rows
    assert [row.rstrip(" |").rsplit("| ", 1)[1] for row in rows[1:]] == ["ok", "ok", "ok", "FAIL"]


def test_merge_prefixes_labels_and_keeps_verdicts(embeddings):
    single = compare(embeddings, embeddings, label="single")
    padded_cand = embeddings.clone()
    padded_cand[0, 0] += 1.0
    padded = compare(embeddings, padded_cand, label="padded")
    merged = ParityReport.merge(single, padded, label="all")
    assert len(merged.clips) == 8 and merged.label == "all"
    assert merged.failures == ("padded/clip0",)
    assert merge_reports([single, padded], label="all") == merged
    unlabelled = compare(embeddings, embeddings)
    with pytest.raises(ValueError, match="unique"):
        ParityReport.merge(unlabelled, unlabelled)
    with pytest.raises(ValueError, match="different bounds"):
        ParityReport.merge(single, compare(embeddings, embeddings, bounds=ParityBounds(0.9, 1e-3), label="x"))
    with pytest.raises(ValueError, match="at least one"):
        ParityReport.merge()


def test_report_needs_clips():
    with pytest.raises(ValueError, match="at least one clip"):
        ParityReport(())
    assert ParityReport([ClipParity("a", 1.0, 0.0, 0.0)]).clips == (ClipParity("a", 1.0, 0.0, 0.0),)


def test_a_clip_of_unknown_scale_fails_a_relative_bound():
    """A hand-made clip without max|ref| has no relative max|diff|: never a silent pass."""
    clip = ClipParity("a", 1.0, 0.0, 0.0)
    assert clip.max_rel_diff is None and not clip.passed(ParityBounds())
    assert clip.passed(ParityBounds(max_rel_diff=None, max_abs_diff=0.0))
    report = ParityReport([clip])
    assert report.worst_max_rel_diff is None and report.failures == ("a",)
    assert "max|diff|/max|ref| unknown" in report.headline() and "| unknown | FAIL |" in report.to_markdown()
