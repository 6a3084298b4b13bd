"""Trial scoring, EER / minDCF and decision-level parity, against references written here.

The metrics are checked against a brute-force evaluation of every threshold (loops, no
cumulative sums) and a geometric EER (the DET polyline intersected with the diagonal), on
random scores with ties, plus cases computed by hand.  Scores are checked against a plain
numpy cosine, embeddings are written with kaldiio, and the committed corpus is read with
soundfile.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from statistics import NormalDist

import matplotlib

matplotlib.use("Agg")  # before anything else can pick an interactive backend

import kaldiio
import numpy as np
import pytest
import soundfile as sf
from matplotlib.figure import Figure

from w2vlab.cli import main
from w2vlab.corpus._trials import (
    Trials,
    TrialScores,
    compare_embeddings,
    compare_trials,
    det_curve,
    eer,
    load_embeddings,
    min_dcf,
    read_trials,
    score_trials,
)
from w2vlab.lab import _plots as plots

CORPUS = Path(__file__).parent / "data" / "corpus"
PACKAGE = Path(__file__).resolve().parents[1] / "w2vlab"


# --------------------------------------------------------------------------- independent references


def brute_points(scores, labels) -> list[tuple[float, float, float]]:
    """(threshold, fpr, fnr) for every distinct score and +inf, "accept iff score >= threshold", by loops."""
    pairs = list(zip(map(float, scores), map(int, labels)))
    n_tgt = sum(y for _, y in pairs)
    n_non = len(pairs) - n_tgt
    points = []
    for t in sorted({s for s, _ in pairs}) + [math.inf]:
        misses = sum(1 for s, y in pairs if y == 1 and s < t)
        false_accepts = sum(1 for s, y in pairs if y == 0 and s >= t)
        points.append((t, false_accepts / n_non, misses / n_tgt))
    return points


def brute_min_dcf(scores, labels, p_target, c_miss=1.0, c_fa=1.0) -> tuple[float, set[float]]:
    """Minimum normalised DCF over every threshold, and every threshold reaching it."""
    costs = [(c_miss * p_target * fnr + c_fa * (1 - p_target) * fpr, t) for t, fpr, fnr in brute_points(scores, labels)]
    best = min(c for c, _ in costs)
    return best / min(c_miss * p_target, c_fa * (1 - p_target)), {
        t for c, t in costs if math.isclose(c, best, abs_tol=1e-12)
    }


def geometric_eer(scores, labels) -> float:
    """Where the DET polyline (fpr, fnr) meets fnr == fpr: intersect each segment with the diagonal."""
    points = [(fpr, fnr) for _, fpr, fnr in brute_points(scores, labels)]
    hits = []
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        g0, g1 = y0 - x0, y1 - x1  # signed distance-like value to the diagonal at each end
        if g0 == g1 == 0:
            hits.append(y0)
        elif min(g0, g1) <= 0 <= max(g0, g1):
            lam = g0 / (g0 - g1)
            hits.append(y0 + lam * (y1 - y0))
    assert hits, "a DET polyline from (1, 0) to (0, 1) always meets the diagonal"
    assert max(hits) - min(hits) < 1e-12, hits  # fpr falls and fnr rises: one crossing (maybe on a vertex)
    return hits[0]


def numpy_cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def random_scores(seed: int, n: int = 300, decimals: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping target / non-target scores, rounded so that many are tied."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = (0, 1)
    scores = np.round(rng.normal(size=n) + 1.2 * labels, decimals)
    return scores, labels


def write_ark(directory: Path, embeddings: dict[str, np.ndarray], name: str = "embeddings") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with kaldiio.WriteHelper(f"ark,scp:{directory / name}.ark,{directory / name}.scp") as writer:
        for key, value in embeddings.items():
            writer[key] = np.asarray(value, dtype=np.float32)
    return directory / f"{name}.scp"


def speaker_embeddings(seed: int = 0, speakers: int = 4, utts: int = 4, dim: int = 16, noise: float = 0.8):
    """``spk<i>-u<j>`` -> speaker mean + noise: overlapping, so EER is neither 0 nor 0.5."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(speakers, dim))
    return {
        f"spk{s}-u{u}": (means[s] + noise * rng.normal(size=dim)).astype(np.float32)
        for s in range(speakers)
        for u in range(utts)
    }


def all_pairs_trials(keys) -> Trials:
    keys = sorted(keys)
    pairs = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1 :]]
    return Trials(
        tuple(a for a, _ in pairs),
        tuple(b for _, b in pairs),
        [int(a.split("-")[0] == b.split("-")[0]) for a, b in pairs],
    )


# --------------------------------------------------------------------------- EER and minDCF


@pytest.mark.parametrize("seed", range(6))
def test_metrics_match_brute_force_on_random_tied_scores(seed):
    scores, labels = random_scores(seed, decimals=1 if seed % 2 else 2)
    value, threshold = eer(scores, labels)
    assert value == pytest.approx(geometric_eer(scores, labels), abs=1e-12)
    # The threshold is the first point where fnr >= fpr, under "accept iff score >= threshold".
    first = next(t for t, fpr, fnr in brute_points(scores, labels) if fnr >= fpr)
    assert threshold == first
    for p_target, c_miss, c_fa in ((0.01, 1, 1), (0.005, 1, 1), (0.5, 1, 1), (0.05, 10, 1), (0.3, 1, 3)):
        value, threshold = min_dcf(scores, labels, p_target, c_miss, c_fa)
        reference, best_thresholds = brute_min_dcf(scores, labels, p_target, c_miss, c_fa)
        assert value == pytest.approx(reference, abs=1e-12)
        finite = {t if t < math.inf else np.nextafter(scores.max(), np.inf) for t in best_thresholds}
        assert threshold == min(finite)  # the lowest threshold reaching the minimum


def test_det_curve_points_match_brute_force():
    scores, labels = random_scores(7, n=60)
    fpr, fnr, thresholds = det_curve(scores, labels)
    points = brute_points(scores, labels)
    assert len(thresholds) == len(points) == len(set(scores.tolist())) + 1
    np.testing.assert_array_equal(thresholds[:-1], [t for t, _, _ in points[:-1]])
    assert thresholds[-1] > scores.max() and thresholds[-1] == np.nextafter(scores.max(), np.inf)
    np.testing.assert_allclose(fpr, [p[1] for p in points], atol=1e-15)
    np.testing.assert_allclose(fnr, [p[2] for p in points], atol=1e-15)


def test_hand_computed_case():
    """Targets 0.9, 0.3; non-targets 0.5, 0.1, 0.2 (worked out on paper).

    threshold: 0.1   0.2   0.3   0.5   0.9   above
    fpr:       1     2/3   1/3   1/3   0     0
    fnr:       0     0     0     1/2   1/2   1
    The polyline crosses the diagonal on the segment 0.3 -> 0.5 (fpr = 1/3): EER 1/3, threshold 0.5.
    """
    scores, labels = [0.9, 0.5, 0.3, 0.1, 0.2], [1, 0, 1, 0, 0]
    value, threshold = eer(scores, labels)
    assert value == pytest.approx(1 / 3, abs=1e-15) and threshold == 0.5
    # p = 0.5: costs 0.5 * (fnr + fpr) = .5, 1/3, 1/6, 5/12, 1/4, .5 -> min 1/6 at 0.3, / 0.5 = 1/3.
    assert min_dcf(scores, labels, 0.5) == (pytest.approx(1 / 3, abs=1e-15), 0.3)
    # p = 0.01: 0.01 * fnr + 0.99 * fpr -> min 0.005 at 0.9 (reject one target, accept no non-target); / 0.01.
    assert min_dcf(scores, labels, 0.01) == (pytest.approx(0.5, abs=1e-12), 0.9)


def test_known_cases():
    separated = ([0.1, 0.2, 0.3, 0.7, 0.8], [0, 0, 0, 1, 1])
    assert eer(*separated) == (0.0, 0.7)  # accept from the lowest target score: no error at all
    assert min_dcf(*separated, 0.01) == (0.0, 0.7)
    reversed_ = ([0.9, 0.8, 0.3, 0.2], [0, 0, 1, 1])
    assert eer(*reversed_)[0] == 1.0
    constant = ([0.5] * 6, [0, 1, 0, 1, 1, 0])  # one operating point between accept-all and reject-all
    assert eer(*constant)[0] == 0.5
    assert min_dcf(*constant, 0.01)[0] == 1.0  # no better than the trivial system
    # Same distribution for both classes: EER -> 0.5.  Equal-variance Gaussians d' apart: Phi(-d'/2).
    rng = np.random.default_rng(0)
    n = 100_000
    labels = np.repeat([0, 1], n)
    assert eer(rng.normal(size=2 * n), labels)[0] == pytest.approx(0.5, abs=0.01)
    shifted = rng.normal(size=2 * n) + 2.0 * labels
    assert eer(shifted, labels)[0] == pytest.approx(NormalDist().cdf(-1.0), abs=0.005)


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        ([0.1, 0.2], [1, 1], "at least one of each"),
        ([0.1, 0.2, 0.3], [1, 0], "one label per score"),
        ([0.1, float("nan")], [1, 0], "NaN/Inf"),
        ([0.1, 0.2], [1, 2], "1 (target) or 0"),
    ],
)
def test_metric_input_errors(scores, labels, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        eer(scores, labels)
    with pytest.raises(ValueError, match=r"p_target=1\.0"):
        min_dcf([0.1, 0.2], [0, 1], 1.0)


# --------------------------------------------------------------------------- trial files


def test_read_trials_both_formats(tmp_path):
    vox = tmp_path / "vox.txt"
    vox.write_text("1 a-1 a-2\n\n0 a-1 b-1\n0 b-2 a-2\n")
    wes = tmp_path / "wes.txt"
    wes.write_text("a-1 a-2 target\na-1 b-1 nontarget\nb-2 a-2 nontarget\n")
    for path, fmt in ((vox, "voxceleb"), (wes, "wespeaker")):
        t = read_trials(path)
        assert (t.format, t.source, len(t)) == (fmt, str(path), 3)
        assert t.enroll == ("a-1", "a-1", "b-2") and t.test == ("a-2", "b-1", "a-2")
        assert t.labels.tolist() == [1, 0, 0] and (t.n_target, t.n_nontarget) == (1, 2)
        assert t.keys == ("a-1", "a-2", "b-1", "b-2")
    ambiguous = tmp_path / "ambiguous.txt"
    ambiguous.write_text("1 x target\nx y nontarget\n")  # line 1 fits both; line 2 decides
    assert read_trials(ambiguous).format == "wespeaker"
    assert read_trials(ambiguous).labels.tolist() == [1, 0]


@pytest.mark.parametrize(
    "text, line, expected",
    [
        ("1 a b\n1 a\n", 2, "is not a trial"),
        ("1 a b\nyes a b\n", 2, "is not a trial"),
        ("a b target\na b maybe\n", 2, "is not a trial"),
        ("1 a b\n0 a c\na b target\n", 3, "is a wespeaker trial, but the file is voxceleb"),
        ("a b nontarget\n1 a c\n", 2, "is a voxceleb trial, but the file is wespeaker"),
    ],
)
def test_read_trials_rejects_malformed_and_mixed_lines(tmp_path, text, line, expected):
    path = tmp_path / "trials.txt"
    path.write_text(text)
    bad = text.splitlines()[line - 1]
    with pytest.raises(ValueError) as info:
        read_trials(path)
    message = str(info.value)
    assert f"{path}, line {line}: {bad!r}" in message and expected in message
    assert "expected" in message


def test_read_trials_empty_and_missing(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match="holds no trials"):
        read_trials(empty)
    with pytest.raises(FileNotFoundError, match="trials file not found"):
        read_trials(tmp_path / "nope.txt")


# --------------------------------------------------------------------------- scoring


def test_score_trials_is_the_cosine_of_each_pair():
    embeddings = speaker_embeddings()
    trials = all_pairs_trials(embeddings)
    scored = score_trials(embeddings, trials)
    expected = [numpy_cosine(embeddings[e], embeddings[t]) for e, t in zip(trials.enroll, trials.test)]
    np.testing.assert_allclose(scored.scores, expected, atol=1e-12)
    assert (scored.skipped, scored.missing_keys, len(scored)) == (0, (), len(trials))
    assert not scored.scores.flags.writeable and not trials.labels.flags.writeable
    as_rows = {k: v[None, :] for k, v in embeddings.items()}  # [1, D] entries count as [D]
    np.testing.assert_array_equal(score_trials(as_rows, trials).scores, scored.scores)


def test_missing_keys_error_lists_them_or_skips():
    embeddings = speaker_embeddings(speakers=4, utts=4)
    trials = all_pairs_trials(embeddings)
    gone = sorted(embeddings)[:12]
    partial = {k: v for k, v in embeddings.items() if k not in gone}
    with pytest.raises(ValueError) as info:
        score_trials(partial, trials)
    message = str(info.value)
    affected = sum(1 for e, t in zip(trials.enroll, trials.test) if e in gone or t in gone)
    assert "12 of 16 trial keys have no embedding" in message and "and 2 more" in message
    assert ", ".join(gone[:10]) in message and gone[10] not in message
    assert f"needed by {affected} of {len(trials)} trials" in message and "--skip-missing" in message
    scored = score_trials(partial, trials, skip_missing=True)
    assert scored.skipped == affected and len(scored) == len(trials) - affected and scored.missing_keys == tuple(gone)
    assert all(e not in gone and t not in gone for e, t in zip(scored.trials.enroll, scored.trials.test))
    with pytest.raises(ValueError, match="none of the"):
        score_trials({}, trials, skip_missing=True)


def test_score_trials_rejects_bad_embeddings():
    embeddings = speaker_embeddings()
    trials = all_pairs_trials(embeddings)
    key = sorted(embeddings)[3]
    with pytest.raises(ValueError, match=f"embedding of '{key}' has 8 values"):
        score_trials({**embeddings, key: embeddings[key][:8]}, trials)
    with pytest.raises(ValueError, match=f"NaN/Inf \\({key}\\)"):
        score_trials({**embeddings, key: np.full(16, np.nan)}, trials)


# --------------------------------------------------------------------------- comparison


def separated_scores():
    """Targets at 0.6..0.9 and non-targets at 0.1..0.45: EER 0; every threshold of the reference is 0.6."""
    enroll = tuple(f"e{i}" for i in range(8))
    test = tuple(f"t{i}" for i in range(8))
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    ref = np.array([0.6, 0.7, 0.8, 0.9, 0.1, 0.2, 0.3, 0.45])
    trials = Trials(enroll, test, labels)
    return trials, ref


def test_compare_trials_finds_the_constructed_flips():
    trials, ref = separated_scores()
    cand = ref.copy()
    cand[1] = 0.5  # target falls below the boundary: accepted by the reference, rejected by the candidate
    cand[6] = 0.65  # non-target rises above it: rejected, then accepted
    cand[2] = 0.61  # moves but stays above 0.6: no flip
    cand[5] = 0.2 + 1e-9  # a tiny move: no flip
    comparison = compare_trials(TrialScores(trials, ref), TrialScores(trials, cand), label="ref vs cand")
    assert [p.name for p in comparison.points] == ["EER", "minDCF@0.01", "minDCF@0.005"]
    for point in comparison.points:  # midway between the lowest accepted (0.6) and highest rejected (0.45) score
        assert point.threshold == pytest.approx(0.525)
        assert [(f.enroll, f.test, f.label) for f in point.flips] == [("e1", "t1", 1), ("e6", "t6", 0)]
        assert [(f.reference_score, f.candidate_score) for f in point.flips] == [(0.7, 0.5), (0.3, 0.65)]
    diff = np.abs(cand - ref)
    assert comparison.max_abs_diff == pytest.approx(0.35)
    assert comparison.p99_abs_diff == pytest.approx(np.sort(diff)[-2] + 0.93 * (np.sort(diff)[-1] - np.sort(diff)[-2]))
    assert comparison.median_abs_diff == pytest.approx(np.median(diff))
    eer_point = comparison.points[0]
    assert eer_point.reference == 0.0 and eer_point.candidate == pytest.approx(geometric_eer(cand, trials.labels))
    assert eer_point.difference == pytest.approx(eer_point.candidate)
    dcf = comparison.points[1]
    assert dcf.candidate == pytest.approx(brute_min_dcf(cand, trials.labels, 0.01)[0])
    data = json.loads(json.dumps(comparison.to_dict()))
    assert data["n_flips"] == 6 and [p["n_flips"] for p in data["points"]] == [2, 2, 2]
    assert data["points"][0]["flips"][0] == {
        "enroll": "e1",
        "test": "t1",
        "label": 1,
        "reference_score": 0.7,
        "candidate_score": 0.5,
    }
    assert "flips" not in comparison.summary()["points"][0]
    text = comparison.to_markdown()
    assert "| EER |" in text and "e6 t6 label 0" in text and "2 at minDCF@0.005" in comparison.headline()


def test_a_score_on_the_threshold_does_not_flip_by_rounding():
    """The EER threshold is a reference score: a trial sitting on it must not flip by 1e-8."""
    trials, ref = separated_scores()
    cand = ref.copy()
    on_threshold = int(np.flatnonzero(ref == 0.6)[0])
    cand[on_threshold] -= 1e-8  # rounding-sized move of the very trial that defines the threshold
    assert compare_trials(TrialScores(trials, ref), TrialScores(trials, cand)).n_flips == 0


def test_accepting_nothing_flips_nothing_by_rounding():
    """minDCF can be reached by accepting nothing; then no score, however high, is accepted."""
    trials = Trials(("a", "b", "c", "d"), ("w", "x", "y", "z"), np.array([1, 0, 0, 0]))
    ref = np.array([0.1, 0.9, 0.8, 0.7])  # the target scores lowest: accepting nothing is best at p_target 0.01
    cand = ref + 1e-8
    comparison = compare_trials(TrialScores(trials, ref), TrialScores(trials, cand))
    assert comparison.points[1].reference == pytest.approx(1.0) and comparison.points[1].threshold == np.inf
    assert comparison.points[1].n_flips == 0


def test_compare_trials_no_flips_for_identical_scores_and_rejects_other_trials():
    trials, ref = separated_scores()
    same = compare_trials(TrialScores(trials, ref), TrialScores(trials, ref.copy()))
    assert same.n_flips == 0 and same.max_abs_diff == 0.0
    other = Trials(trials.enroll[::-1], trials.test[::-1], trials.labels[::-1])
    with pytest.raises(ValueError, match="trial 0 is e0 t0 .* but e7 t7"):
        compare_trials(TrialScores(trials, ref), TrialScores(other, ref))
    with pytest.raises(TypeError, match="received ndarray"):
        compare_trials(TrialScores(trials, ref), ref)


def test_compare_embeddings_skips_keys_either_side_lacks():
    ref = speaker_embeddings(seed=1)
    cand = {k: v + np.float32(1e-3) for k, v in ref.items()}
    trials = all_pairs_trials(ref)
    lost_ref, lost_cand = "spk0-u0", "spk2-u3"
    del ref[lost_ref], cand[lost_cand]
    with pytest.raises(ValueError, match=f"^reference: 1 of 16 trial keys have no embedding \\({lost_ref}\\)"):
        compare_embeddings(ref, cand, trials)
    comparison = compare_embeddings(ref, cand, trials, skip_missing=True)
    expected_kept = [i for i in range(len(trials)) if not {trials.enroll[i], trials.test[i]} & {lost_ref, lost_cand}]
    assert len(comparison.reference) == len(comparison.candidate) == len(expected_kept)
    assert comparison.reference.skipped == len(trials) - len(expected_kept)
    assert comparison.reference.missing_keys == (lost_ref, lost_cand)


def test_plot_trial_parity_draws_scatter_and_det():
    trials, ref = separated_scores()
    cand = ref.copy()
    cand[1], cand[6] = 0.5, 0.65
    ref_scores, cand_scores = TrialScores(trials, ref), TrialScores(trials, cand)
    fig = plots.plot_trial_parity(ref_scores, cand_scores, title="parity")
    assert isinstance(fig, Figure) and len(fig.axes) == 3  # score distributions, differences, DET
    _, scatter, det = fig.axes
    assert scatter.get_xlabel() == "reference score" and det.get_title() == "DET"
    flipped = [c for c in scatter.collections if c.get_label() == "flipped decision"]
    assert len(flipped) == 1 and len(flipped[0].get_offsets()) == 2
    labels = [line.get_label() for line in det.get_lines()]
    assert any(label.startswith("reference: EER") for label in labels)
    assert any(label.startswith("candidate: EER") for label in labels)
    assert fig._suptitle.get_text() == "parity"
    assert len(plots.plot_trial_parity(compare_trials(ref_scores, cand_scores)).axes) == 3
    with pytest.raises(TypeError, match="expects a TrialComparison"):
        plots.plot_trial_parity(ref_scores)


# --------------------------------------------------------------------------- embeddings on disk


def test_load_embeddings_round_trip(tmp_path, monkeypatch):
    embeddings = speaker_embeddings(dim=8)
    scp = write_ark(tmp_path / "emb", embeddings)
    relative = tmp_path / "relative"
    relative.mkdir()
    monkeypatch.chdir(relative)
    with kaldiio.WriteHelper("ark,scp:embeddings.ark,embeddings.scp") as writer:  # paths relative to the cwd
        for key, value in embeddings.items():
            writer[key] = value
    assert (relative / "embeddings.scp").read_text().split("\n")[0].split()[1].startswith("embeddings.ark:")
    monkeypatch.chdir(tmp_path)  # elsewhere: relative ark paths resolve against the scp's folder
    for source in (tmp_path / "emb", scp, relative):
        loaded = load_embeddings(source)
        assert sorted(loaded) == sorted(embeddings)
        for key, value in embeddings.items():
            np.testing.assert_array_equal(loaded[key], value)


def test_load_embeddings_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="embeddings not found"):
        load_embeddings(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="has no embeddings.scp"):
        load_embeddings(tmp_path)
    scp = write_ark(tmp_path / "emb", speaker_embeddings(dim=8))
    ark = scp.with_suffix(".ark")
    ark.write_bytes(ark.read_bytes()[:-8])  # the last vector loses two float32 values
    with pytest.raises(ValueError, match="'spk3-u3' has 6 values but that of 'spk0-u0' has 8"):
        load_embeddings(scp)
    marker = tmp_path / "ran"
    bad = tmp_path / "bad.scp"
    for text, message in (
        (f"k0 touch {marker} |\n", "is a shell command"),
        (f"k0 {ark}:3\nk0 {ark}:40\n", "occurs more than once"),
        ("k0\n", "expected `<key> <file.ark>:<offset>`"),
        ("", "lists no embeddings"),
    ):
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_embeddings(bad)
    assert not marker.exists()
    bad.write_text("k0 missing.ark:3\n")
    with pytest.raises(FileNotFoundError, match="ark file missing.ark not found"):
        load_embeddings(bad)


# --------------------------------------------------------------------------- command line


def test_cli_score_trials_and_compare_trials(tmp_path, capsys):
    embeddings = speaker_embeddings(seed=3, speakers=5, utts=4)
    trials = all_pairs_trials(embeddings)
    trials_path = tmp_path / "trials.txt"
    trials_path.write_text("".join(f"{y} {e} {t}\n" for e, t, y in zip(trials.enroll, trials.test, trials.labels)))
    ref_dir = tmp_path / "ref"
    write_ark(ref_dir, embeddings)
    rng = np.random.default_rng(9)
    candidate = {k: v + 0.05 * rng.normal(size=v.shape).astype(np.float32) for k, v in embeddings.items()}
    cand_scp = write_ark(tmp_path / "cand", candidate, name="cand")

    expected = np.array([numpy_cosine(embeddings[e], embeddings[t]) for e, t in zip(trials.enroll, trials.test)])
    out = tmp_path / "scores.txt"
    assert main(["score-trials", str(ref_dir), str(trials_path), "--json", "--output", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["n_trials"], data["n_target"], data["skipped"]) == (len(trials), trials.n_target, 0)
    assert data["eer"] == pytest.approx(geometric_eer(expected, trials.labels), abs=1e-9)
    for entry in data["min_dcf"]:
        assert entry["min_dcf"] == pytest.approx(brute_min_dcf(expected, trials.labels, entry["p_target"])[0], abs=1e-6)
    assert [d["p_target"] for d in data["min_dcf"]] == [0.01, 0.005]
    lines = [line.split() for line in out.read_text().splitlines()]
    assert [(e, t) for e, t, _, _ in lines] == list(zip(trials.enroll, trials.test))
    np.testing.assert_allclose([float(s) for _, _, s, _ in lines], expected, atol=1e-7)
    assert [lab for *_, lab in lines] == ["target" if y else "nontarget" for y in trials.labels]
    assert main(["score-trials", str(ref_dir), str(trials_path)]) == 0
    assert "| EER |" in capsys.readouterr().out

    assert main(["compare-trials", str(ref_dir), str(cand_scp), str(trials_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    cand = np.array([numpy_cosine(candidate[e], candidate[t]) for e, t in zip(trials.enroll, trials.test)])
    assert data["abs_diff"]["max"] == pytest.approx(np.abs(cand - expected).max(), abs=1e-6)
    for point in data["points"]:
        t = point["threshold"]
        flipped = {(e, x) for e, x, r, c in zip(trials.enroll, trials.test, expected, cand) if (r >= t) != (c >= t)}
        # The threshold is one of the reference scores: a trial within rounding of it may go either way.
        on_edge = {
            (e, x)
            for e, x, r, c in zip(trials.enroll, trials.test, expected, cand)
            if min(abs(r - t), abs(c - t)) < 1e-9
        }
        found = {(f["enroll"], f["test"]) for f in point["flips"]}
        assert found - on_edge == flipped - on_edge and point["n_flips"] == len(found)
    assert main(["compare-trials", str(ref_dir), str(cand_scp), str(trials_path)]) == 0
    assert "flipped decisions" in capsys.readouterr().out


def test_cli_bad_input_exits_2_and_skip_missing(tmp_path, capsys):
    embeddings = speaker_embeddings(seed=4)
    trials_path = tmp_path / "trials.txt"
    trials_path.write_text("1 spk0-u0 spk0-u1\n0 spk0-u0 spk1-u0\n0 spk0-u0 ghost-u9\n1 spk1-u0 spk1-u2\n")
    emb = tmp_path / "emb"
    write_ark(emb, embeddings)
    assert main(["score-trials", str(emb), str(trials_path)]) == 2
    assert "1 of 5 trial keys have no embedding (ghost-u9), needed by 1 of 4 trials" in capsys.readouterr().err
    assert main(["score-trials", str(emb), str(trials_path), "--skip-missing", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 1
    assert main(["score-trials", str(tmp_path / "nope"), str(trials_path)]) == 2
    assert "embeddings not found" in capsys.readouterr().err
    assert main(["compare-trials", str(emb), str(emb), str(tmp_path / "nope.txt")]) == 2
    assert "trials file not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- layout and fixtures


def test_trials_module_stays_on_the_consumer_side():
    """numpy, kaldiio and the standard library; of w2vlab only parity and contract (no exporter, no torch)."""
    tree = ast.parse((PACKAGE / "corpus" / "_trials.py").read_text())
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    own = {m for m in modules if m.startswith("w2vlab")}
    absolute = {m.split(".")[0] for m in modules - own}
    absolute |= {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert own <= {"w2vlab._parity", "w2vlab._contract"} and "w2vlab._parity" in own, own
    assert absolute <= {
        "__future__",
        "collections",
        "dataclasses",
        "io",
        "re",
        "warnings",
        "pathlib",
        "typing",
        "numpy",
        "kaldiio",
    }, absolute


def _table(name: str) -> list[list[str]]:
    return [line.split() for line in (CORPUS / name).read_text().splitlines()]


def test_committed_corpus_fixtures():
    wav_scp = _table("wav.scp")
    keys = [key for key, _ in wav_scp]
    assert len(keys) == len(set(keys)) == 40
    for key, rel in wav_scp:
        path = CORPUS / rel  # relative to wav.scp's folder
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), path
        assert 1.0 <= info.duration <= 3.0, (path, info.duration)
        assert path.name == key.replace("-", "_") + ".wav"
        assert np.abs(sf.read(path)[0]).max() > 0.05  # speech, not silence
    utt2spk = dict(_table("utt2spk"))
    assert sorted(utt2spk) == sorted(keys)
    speakers = set(utt2spk.values())
    assert len(speakers) >= 5

    vox, wes = read_trials(CORPUS / "trials.txt"), read_trials(CORPUS / "trials_wespeaker.txt")
    assert (vox.format, wes.format) == ("voxceleb", "wespeaker")
    assert (vox.enroll, vox.test, vox.labels.tolist()) == (wes.enroll, wes.test, wes.labels.tolist())
    assert set(vox.keys) <= set(keys)
    pairs = list(zip(vox.enroll, vox.test))
    assert pairs == sorted(pairs) and len(set(pairs)) == len(pairs) and all(e != t for e, t in pairs)
    assert all(y == (utt2spk[e] == utt2spk[t]) for e, t, y in zip(vox.enroll, vox.test, vox.labels))
    # every same-speaker pair of different utterances is a target trial
    same_speaker = {(a, b) for a in keys for b in keys if a < b and utt2spk[a] == utt2spk[b]}
    assert {(e, t) for e, t, y in zip(vox.enroll, vox.test, vox.labels) if y} == same_speaker
    assert vox.n_nontarget == 3 * vox.n_target
    assert sum(f.stat().st_size for f in CORPUS.rglob("*") if f.is_file()) < 3_000_000
