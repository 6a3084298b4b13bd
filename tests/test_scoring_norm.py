"""Scoring as WeSpeaker scores (w2vlab.corpus._norm): mean subtraction, AS-Norm, score files, metrics.

References written here, not taken from w2vlab: EER / minDCF by the sweep WeSpeaker's
``utils/score_metrics.py`` runs (trials sorted by numpy's default argsort and rejected one at a
time, the crossing interpolated between the two points around it), written with loops; AS-Norm
by a loop over trials and cohort in plain Python (``statistics.pstdev``: ddof 0, as WeSpeaker's
``np.std``); a plain cosine of vectors shifted by a known offset.  Embeddings are written with kaldiio.
"""

from __future__ import annotations

import ast
import json
import math
import statistics
import warnings
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from w2vlab.cli import main
from w2vlab.corpus._norm import (
    ScoreNorm,
    as_norm,
    cohort_mean,
    cohort_stats,
    load_mean,
    read_scores,
    save_mean,
    score_trials_normed,
    subtract_mean,
)
from w2vlab.corpus._trials import Trials, TrialScores, eer, min_dcf, read_trials, score_trials

CORPUS = Path(__file__).parent / "data" / "corpus"
PACKAGE = Path(__file__).resolve().parents[1] / "w2vlab"
P_TARGETS = (0.01, 0.005)


# --------------------------------------------------------------------------- independent references


def wespeaker_metrics(scores, labels, order=None) -> dict:
    """EER (+ the last rejected score) and minDCF at P_TARGETS as WeSpeaker computes them, with loops.

    Its sweep: sort the trials by score (``np.argsort``, unless ``order`` gives another order of the
    ties), reject them one by one; after each, the miss rate (targets rejected / targets) and the
    false-accept rate (1 - non-targets rejected / non-targets).  EER: the first point with
    miss >= false accept and the last with miss < false accept, joined by a line.
    """
    scores = [float(s) for s in scores]
    labels = [int(y) for y in labels]
    order = list(np.argsort(np.asarray(scores))) if order is None else list(order)
    n_tgt = sum(labels)
    n_non = len(labels) - n_tgt
    fnr, fpr, rejected_tgt, rejected_non = [], [], 0, 0
    for i in order:
        rejected_tgt += labels[i]
        rejected_non += 1 - labels[i]
        fnr.append(rejected_tgt / n_tgt)
        fpr.append(1 - rejected_non / n_non)
    x1 = min(k for k in range(len(fnr)) if fnr[k] - fpr[k] >= 0)
    x2 = max(k for k in range(len(fnr)) if fnr[k] - fpr[k] < 0)
    a = (fnr[x1] - fpr[x1]) / (fpr[x2] - fpr[x1] - (fnr[x2] - fnr[x1]))
    out = {"eer": fnr[x1] + a * (fnr[x2] - fnr[x1]), "x1": x1, "sorted": [scores[i] for i in order]}
    for p in P_TARGETS:
        out[p] = min(fnr[k] * p + fpr[k] * (1 - p) for k in range(len(fnr))) / min(p, 1 - p)
    return out


def read_like_compute_metrics(path: Path) -> tuple[list[float], list[bool]]:
    """What WeSpeaker's ``bin/compute_metrics.py`` takes from a score file: column 3, column 4 == 'target'."""
    rows = [line.split() for line in path.read_text().splitlines()]
    return [float(r[2]) for r in rows], [r[3] == "target" for r in rows]


def unit(v) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def dot(a, b) -> float:
    return sum(x * y for x, y in zip(a, b))


def loop_scores(embeddings, trials, mean=None, cohort=None, top_n=None) -> list[float]:
    """Cosine after subtracting ``mean``; with a cohort, AS-Norm's formula trial by trial."""
    mean = [0.0] * len(next(iter(embeddings.values()))) if mean is None else [float(m) for m in mean]

    def shifted(v):
        return [float(x) - m for x, m in zip(v, mean)]

    def stats(v):
        top = sorted((dot(unit(shifted(v)), unit(shifted(c))) for c in cohort), reverse=True)[:top_n]
        return statistics.fmean(top), statistics.pstdev(top)

    out = []
    for e, t in zip(trials.enroll, trials.test):
        s = dot(unit(shifted(embeddings[e])), unit(shifted(embeddings[t])))
        if cohort is not None:
            (mu_e, sd_e), (mu_t, sd_t) = stats(embeddings[e]), stats(embeddings[t])
            s = 0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)
        out.append(s)
    return out


# --------------------------------------------------------------------------- fixtures


def write_ark(directory: Path, embeddings: dict, name: str = "embeddings") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with kaldiio.WriteHelper(f"ark,scp:{directory / name}.ark,{directory / name}.scp") as writer:
        for key, value in embeddings.items():
            writer[key] = np.asarray(value, dtype=np.float32)
    return directory / f"{name}.scp"


def speaker_set(seed=0, speakers=4, utts=3, dim=16, offset=0.0, slash=True):
    """Key -> float32 embedding (speaker mean + noise + a common offset); VoxCeleb-like keys with '/'."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(speakers, dim))
    out = {}
    for s in range(speakers):
        for u in range(utts):
            key = f"id1027{s}/vid{u}/0000{u}.wav" if slash else f"spk{s}-u{u}"
            out[key] = (means[s] + 0.9 * rng.normal(size=dim) + offset).astype(np.float32)
    return out


def pairs(embeddings) -> Trials:
    keys = sorted(embeddings)
    ab = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1 :]]
    same = [int(a.split("/")[0].split("-")[0] == b.split("/")[0].split("-")[0]) for a, b in ab]
    return Trials(tuple(a for a, _ in ab), tuple(b for _, b in ab), same, "wespeaker")


def write_trials(path: Path, trials: Trials) -> Path:
    path.write_text(
        "".join(
            f"{e} {t} {'target' if y else 'nontarget'}\n" for e, t, y in zip(trials.enroll, trials.test, trials.labels)
        )
    )
    return path


def cohort_set(seed=7, n=24, dim=16, offset=0.0) -> dict:
    rng = np.random.default_rng(seed)
    return {f"cohort/spk{i:03d}": (rng.normal(size=dim) + offset).astype(np.float32) for i in range(n)}


# --------------------------------------------------------------------------- EER and minDCF as WeSpeaker


@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_wespeaker_bit_for_bit_without_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 2000)
    labels[:2] = (0, 1)
    scores = rng.normal(size=labels.size) + 1.5 * labels  # continuous: no two equal
    assert np.unique(scores).size == scores.size
    ref = wespeaker_metrics(scores, labels)
    value, threshold = eer(scores, labels)
    assert value == ref["eer"]
    assert threshold == ref["sorted"][ref["x1"] + 1]  # w2vlab: the lowest accepted; WeSpeaker: the highest rejected
    for p in P_TARGETS:
        assert min_dcf(scores, labels, p)[0] == ref[p]


@pytest.mark.parametrize("seed", range(4))
def test_tied_scores_wespeaker_depends_on_the_tie_order_w2vlab_does_not(seed):
    """With ties WeSpeaker's sweep also visits points that split a tie (no threshold reaches them),
    in the order argsort leaves the tied trials: its numbers change when the file's lines are
    shuffled.  w2vlab keeps tied trials together: the same for every order, its minDCF never below
    WeSpeaker's, its EER between WeSpeaker's with the targets of each tie first and last."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 400)
    labels[:2] = (0, 1)
    scores = np.round(rng.normal(size=labels.size) + 1.2 * labels, 1)
    ours = eer(scores, labels)[0], *(min_dcf(scores, labels, p)[0] for p in P_TARGETS)
    seen = set()
    for _ in range(8):
        perm = rng.permutation(labels.size)
        ref = wespeaker_metrics(scores[perm], labels[perm])
        seen.add(ref["eer"])
        assert (
            eer(scores[perm], labels[perm])[0],
            *(min_dcf(scores[perm], labels[perm], p)[0] for p in P_TARGETS),
        ) == (ours)
        for p, value in zip(P_TARGETS, ours[1:]):
            assert value >= ref[p] - 1e-15
    assert len(seen) > 1  # the shuffles moved WeSpeaker's EER
    targets_first = wespeaker_metrics(scores, labels, np.lexsort((-labels, scores)))["eer"]
    targets_last = wespeaker_metrics(scores, labels, np.lexsort((labels, scores)))["eer"]
    assert min(targets_first, targets_last) - 1e-12 <= ours[0] <= max(targets_first, targets_last) + 1e-12


def test_committed_trials_cli_metrics_equal_wespeaker_on_its_score_file(tmp_path, capsys):
    """The committed WeSpeaker-format trials, synthetic embeddings per speaker, mean + AS-Norm: the
    metrics printed equal the reference's on the score file as compute_metrics.py reads it."""
    trials = read_trials(CORPUS / "trials_wespeaker.txt")
    speaker = dict(line.split() for line in (CORPUS / "utt2spk").read_text().splitlines())
    rng = np.random.default_rng(3)
    means = {s: rng.normal(size=32) for s in sorted(set(speaker.values()))}
    embeddings = {k: means[speaker[k]] + rng.normal(size=32) + 2.0 for k in trials.keys}
    emb = write_ark(tmp_path / "emb", embeddings)
    cohort = write_ark(tmp_path / "cohort", cohort_set(n=40, dim=32, offset=2.0))
    out = tmp_path / "scores.txt"
    argv = ["score-trials", str(emb), str(CORPUS / "trials_wespeaker.txt"), "--mean-from", str(cohort)]
    assert main([*argv, "--as-norm", str(cohort), "--top-n", "10", "--output", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    scores, labels = read_like_compute_metrics(out)
    assert len(set(scores)) == len(scores) == len(trials)
    ref = wespeaker_metrics(scores, labels)
    assert printed["eer"] == ref["eer"]
    assert [d["min_dcf"] for d in printed["min_dcf"]] == [ref[p] for p in P_TARGETS]
    assert printed["scoring"] == "cosine, mean-subtracted, AS-Norm top-10"
    f32 = {k: np.float32(v) for k, v in embeddings.items()}
    cohort_rows = [np.float32(v) for v in cohort_set(n=40, dim=32, offset=2.0).values()]
    expected = loop_scores(f32, trials, np.mean(np.array(cohort_rows, np.float64), axis=0), cohort_rows, 10)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-9)


# --------------------------------------------------------------------------- mean subtraction


def test_cohort_mean_is_the_mean_of_the_raw_embeddings():
    assert cohort_mean(np.array([[2.0, 0.0], [0.0, 4.0]])).tolist() == [1.0, 2.0]  # not of unit vectors
    assert cohort_mean({"a": np.float32([2, 0]), "b": np.float32([0, 4])}).tolist() == [1.0, 2.0]


def test_mean_subtraction_removes_a_known_offset():
    """Embeddings m + u_i and a cohort whose mean is m exactly: scores become cos(u_e, u_t)."""
    rng = np.random.default_rng(1)
    m = 4.0 * np.ones(16)
    u = {f"id1/{i}.wav": rng.normal(size=16) for i in range(6)}
    embeddings = {k: m + v for k, v in u.items()}
    v = rng.normal(size=(10, 16))
    cohort = np.concatenate([m + v, m - v])  # mean m
    trials = pairs(embeddings)
    expected = [dot(unit(u[e]), unit(u[t])) for e, t in zip(trials.enroll, trials.test)]
    shifted = score_trials_normed(embeddings, trials, mean=cohort_mean(cohort))
    np.testing.assert_allclose(shifted.scores, expected, atol=1e-12)
    assert shifted.scoring == "cosine, mean-subtracted"
    plain = score_trials(embeddings, trials).scores
    assert plain.min() > 0.5 and np.abs(plain - expected).max() > 0.3  # the offset dominated them
    moved = subtract_mean(embeddings, m)
    assert all(np.allclose(moved[k], u[k], atol=1e-12) for k in u)
    np.testing.assert_array_equal(score_trials_normed(embeddings, trials, mean=np.zeros(16)).scores, plain)


def test_stored_mean_round_trip_and_shape_errors(tmp_path):
    mean = np.arange(16, dtype=np.float32)
    path = save_mean(tmp_path / "mean_vec.npy", mean)
    np.testing.assert_array_equal(load_mean(path), mean)
    np.save(tmp_path / "row.npy", np.ones((1, 16)))
    with pytest.raises(ValueError, match=r"shape \(1, 16\); expected a \[D\] float array"):
        load_mean(tmp_path / "row.npy")
    with pytest.raises(FileNotFoundError, match="mean file not found"):
        load_mean(tmp_path / "nope.npy")
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(ValueError, match="not a readable .npy"):
        load_mean(tmp_path / "text.npy")
    with pytest.raises(ValueError, match=r"the mean has shape \(17,\) but the embeddings are 16-dimensional"):
        subtract_mean(speaker_set(), np.ones(17))
    with pytest.raises(ValueError, match=r"received a mean of shape \(1, 16\); expected a \[D\] vector"):
        ScoreNorm(mean=np.ones((1, 16)))
    with pytest.raises(ValueError, match=r"mean has shape \(17,\) but the AS-Norm cohort embeddings are 16-dim"):
        ScoreNorm(mean=np.ones(17), cohort=np.ones((4, 16)))
    with pytest.raises(ValueError, match="mean cohort is empty"):
        cohort_mean({})
    with pytest.raises(ValueError, match=r"shape \(0, 4\)"):
        cohort_mean(np.zeros((0, 4)))


# --------------------------------------------------------------------------- AS-Norm


@pytest.mark.parametrize("top_n", [2, 5, 24])
def test_as_norm_equals_the_formula_trial_by_trial(top_n):
    embeddings = speaker_set(seed=2, offset=1.5)
    cohort = list(cohort_set(offset=1.5).values())
    trials = pairs(embeddings)
    mean = cohort_mean(np.array(cohort))
    got = score_trials_normed(embeddings, trials, mean=mean, cohort=np.array(cohort), top_n=top_n)
    np.testing.assert_allclose(got.scores, loop_scores(embeddings, trials, mean, cohort, top_n), rtol=0, atol=1e-10)
    assert got.scoring == f"cosine, mean-subtracted, AS-Norm top-{top_n}"
    no_mean = score_trials_normed(embeddings, trials, cohort=np.array(cohort), top_n=top_n)
    np.testing.assert_allclose(no_mean.scores, loop_scores(embeddings, trials, None, cohort, top_n), atol=1e-10)


def test_cohort_stats_in_chunks_equal_one_sort(monkeypatch):
    """Many more embeddings than one chunk: partition per chunk == a full descending sort."""
    import w2vlab.corpus._norm as norm

    monkeypatch.setattr(norm, "_ROWS", 7)
    rng = np.random.default_rng(5)
    e, c = rng.normal(size=(50, 8)), rng.normal(size=(30, 8))
    mu, sd = cohort_stats(e, c, 6)
    full = np.sort((e / np.linalg.norm(e, axis=1)[:, None]) @ (c / np.linalg.norm(c, axis=1)[:, None]).T, axis=1)
    np.testing.assert_allclose(mu, full[:, -6:].mean(axis=1), atol=1e-14)
    np.testing.assert_allclose(sd, full[:, -6:].std(axis=1), atol=1e-14)


def test_as_norm_errors_and_top_n_above_the_cohort_clamps_with_a_warning():
    embeddings = speaker_set(seed=2)
    trials = pairs(embeddings)
    cohort = np.array(list(cohort_set().values()))  # 24 x 16
    with pytest.warns(UserWarning, match="top_n=100 exceeds the AS-Norm cohort \\(24 embeddings\\); using all 24"):
        clamped = score_trials_normed(embeddings, trials, cohort=cohort, top_n=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        whole = score_trials_normed(embeddings, trials, cohort=cohort, top_n=24)
    np.testing.assert_array_equal(clamped.scores, whole.scores)
    assert clamped.scoring == "cosine, AS-Norm top-24"
    with pytest.raises(ValueError, match="top_n=1; expected an integer >= 2"):
        score_trials_normed(embeddings, trials, cohort=cohort, top_n=1)
    with pytest.raises(ValueError, match="cohort is 8-dimensional but the embeddings are 16-dimensional"):
        score_trials_normed(embeddings, trials, cohort=cohort[:, :8])
    with pytest.raises(ValueError, match="AS-Norm cohort is empty"):
        score_trials_normed(embeddings, trials, cohort={})
    with pytest.raises(ValueError, match="cohort holds 1 embedding; expected at least 2"):
        score_trials_normed(embeddings, trials, cohort=cohort[:1], top_n=2)
    with pytest.raises(ValueError, match="are all equal"):
        as_norm(score_trials(embeddings, trials), embeddings, np.repeat(cohort[:1], 5, axis=0), 3)
    with pytest.raises(ValueError, match="a mean cohort .* and a stored mean"):
        ScoreNorm.load(mean_from="a", mean="b")
    with pytest.raises(ValueError, match="top_n=5 without an AS-Norm cohort"):
        ScoreNorm.load(top_n=5)


# --------------------------------------------------------------------------- score files


def test_score_file_round_trip_keeps_slashed_keys_labels_and_every_bit(tmp_path):
    embeddings = speaker_set(seed=4)
    trials = pairs(embeddings)
    assert all("/" in k for k in trials.keys)
    scores = score_trials_normed(embeddings, trials, cohort=np.array(list(cohort_set().values())), top_n=5)
    path = scores.write(tmp_path / "vox1_O.kaldi.score")
    lines = [line.split() for line in path.read_text().splitlines()]
    assert all(len(fields) == 4 and fields[3] in ("target", "nontarget") for fields in lines)
    assert [fields[3] == "target" for fields in lines] == [bool(y) for y in trials.labels]
    back = read_scores(path)
    assert (back.trials.enroll, back.trials.test, back.trials.format) == (trials.enroll, trials.test, "wespeaker")
    np.testing.assert_array_equal(back.trials.labels, trials.labels)
    np.testing.assert_array_equal(back.scores, scores.scores)  # exact: every digit written
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / "bad.score").write_text("a b 0.5 target\na c x nontarget\n")
    with pytest.raises(ValueError, match=r"bad.score, line 2: 'a c x nontarget'; expected"):
        read_scores(tmp_path / "bad.score")


def test_read_scores_takes_score_norm_files_with_extra_columns(tmp_path):
    path = tmp_path / "asnorm.score"
    path.write_text("id1/a.wav id2/b.wav 1.25000 target 1.0 1.0 0.1 0.2\nid1/a.wav id3/c.wav -0.5 nontarget 1 1 0 0\n")
    back = read_scores(path)
    assert back.scores.tolist() == [1.25, -0.5] and back.trials.labels.tolist() == [1, 0]
    assert isinstance(back, TrialScores)


# --------------------------------------------------------------------------- command line


def test_cli_score_trials_mean_and_as_norm_end_to_end(tmp_path, capsys):
    embeddings = speaker_set(seed=6, offset=2.0)
    trials = pairs(embeddings)
    trials_path = write_trials(tmp_path / "trials.kaldi", trials)
    emb = write_ark(tmp_path / "vox1", embeddings)
    cohort = cohort_set(offset=2.0)
    cohort_dir = tmp_path / "vox2_dev"
    write_ark(cohort_dir, cohort)
    f32 = {k: np.float32(v) for k, v in embeddings.items()}
    mean = np.mean(np.array(list(cohort.values()), np.float64), axis=0)

    out = tmp_path / "mean.score"
    argv = ["score-trials", str(emb), str(trials_path), "--json", "--output", str(out)]
    assert main([*argv, "--mean-from", str(cohort_dir), "--save-mean", str(tmp_path / "mean_vec.npy")]) == 0
    assert json.loads(capsys.readouterr().out)["scoring"] == "cosine, mean-subtracted"
    np.testing.assert_allclose(read_like_compute_metrics(out)[0], loop_scores(f32, trials, mean), atol=1e-12)
    np.testing.assert_allclose(load_mean(tmp_path / "mean_vec.npy"), mean, atol=1e-12)
    assert main([*argv[:-1], str(tmp_path / "stored.score"), "--mean", str(tmp_path / "mean_vec.npy")]) == 0
    capsys.readouterr()
    assert (tmp_path / "stored.score").read_text() == out.read_text()

    assert (
        main([*argv, "--mean-from", str(cohort_dir), "--as-norm", str(cohort_dir / "embeddings.scp"), "--top-n", "5"])
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["scoring"] == "cosine, mean-subtracted, AS-Norm top-5"
    expected = loop_scores(f32, trials, mean, list(cohort.values()), 5)
    np.testing.assert_allclose(read_like_compute_metrics(out)[0], expected, atol=1e-9)
    with pytest.warns(UserWarning, match="top_n=300 exceeds"):  # the default, 300, above the 24 of the cohort
        assert main(["score-trials", str(emb), str(trials_path), "--as-norm", str(cohort_dir)]) == 0
    assert "AS-Norm top-24" in capsys.readouterr().out


def test_cli_compare_trials_normalises_each_side_with_its_own_cohort(tmp_path, capsys):
    ref = speaker_set(seed=8, offset=1.0)
    rng = np.random.default_rng(9)
    cand = {k: v + 0.05 * rng.normal(size=v.shape).astype(np.float32) for k, v in ref.items()}
    ref_cohort = cohort_set(seed=10, offset=1.0)
    cand_cohort = {k: v + 0.05 * rng.normal(size=v.shape).astype(np.float32) for k, v in ref_cohort.items()}
    trials = pairs(ref)
    trials_path = write_trials(tmp_path / "trials.kaldi", trials)
    paths = [write_ark(tmp_path / name, d) for name, d in (("ref", ref), ("cand", cand))]
    cohorts = [write_ark(tmp_path / name, d) for name, d in (("ref_c", ref_cohort), ("cand_c", cand_cohort))]
    argv = ["compare-trials", *map(str, paths), str(trials_path), "--json", "--top-n", "6"]
    assert main([*argv, "--mean-from", *map(str, cohorts), "--as-norm", *map(str, cohorts)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["scoring"] == dict.fromkeys(("reference", "candidate"), "cosine, mean-subtracted, AS-Norm top-6")

    def side(emb, coh):
        rows = list(coh.values())
        return np.array(loop_scores(emb, trials, np.mean(np.array(rows, np.float64), axis=0), rows, 6))

    r, c = side(ref, ref_cohort), side(cand, cand_cohort)
    assert data["abs_diff"]["max"] == pytest.approx(np.abs(c - r).max(), abs=1e-9)
    assert data["points"][0]["reference"] == pytest.approx(eer(r, trials.labels)[0], abs=1e-12)
    for point in data["points"]:
        t = point["threshold"]
        flipped = {(e, x) for e, x, a, b in zip(trials.enroll, trials.test, r, c) if (a >= t) != (b >= t)}
        assert {(f["enroll"], f["test"]) for f in point["flips"]} == flipped
    crossed = side(cand, ref_cohort)  # the other model's cohort gives other scores: the option matters
    assert np.abs(crossed - c).max() > 1e-4

    with pytest.raises(SystemExit) as stop:  # argparse: two paths, one per side
        main([*argv[:-2], "--as-norm", str(cohorts[0])])
    assert stop.value.code == 2 and "--as-norm: expected 2 arguments" in capsys.readouterr().err


def test_cli_scoring_errors_exit_2_with_the_reason(tmp_path, capsys):
    embeddings = speaker_set(seed=1)
    trials_path = write_trials(tmp_path / "trials.kaldi", pairs(embeddings))
    emb = write_ark(tmp_path / "emb", embeddings)
    (tmp_path / "empty.scp").write_text("")
    np.save(tmp_path / "bad_mean.npy", np.ones(17))
    cohort = write_ark(tmp_path / "c", cohort_set())
    base = ["score-trials", str(emb), str(trials_path)]
    cases = [
        (["--mean-from", str(tmp_path / "empty.scp")], "lists no embeddings"),
        (["--as-norm", str(tmp_path / "empty.scp")], "lists no embeddings"),
        (["--mean", str(tmp_path / "bad_mean.npy")], "the mean has shape (17,) but the embeddings are 16-dimensional"),
        (["--top-n", "5"], "top_n=5 without an AS-Norm cohort"),
        (["--as-norm", str(cohort), "--top-n", "1"], "top_n=1; expected an integer >= 2"),
        (["--save-mean", str(tmp_path / "m.npy")], "--save-mean stores the mean of --mean-from COHORT"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra
    with pytest.raises(SystemExit) as stop:  # argparse: one mean source at a time
        main([*base, "--mean-from", str(cohort), "--mean", str(tmp_path / "bad_mean.npy")])
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    cand = ["compare-trials", str(emb), str(emb), str(trials_path)]
    assert main([*cand, "--mean", str(tmp_path / "bad_mean.npy"), str(tmp_path / "bad_mean.npy")]) == 2
    assert "reference: the mean has shape (17,)" in capsys.readouterr().err


def test_norm_module_stays_on_the_consumer_side():
    tree = ast.parse((PACKAGE / "corpus" / "_norm.py").read_text())
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    modules |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    own = {m for m in modules if m.startswith("w2vlab")}
    assert own == {"w2vlab.corpus._trials", "w2vlab._contract"}, own
    assert {m.split(".")[0] for m in modules - own} <= {
        "__future__",
        "collections",
        "dataclasses",
        "warnings",
        "pathlib",
        "typing",
        "numpy",
    }
