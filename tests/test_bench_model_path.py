"""``python -m w2vlab.bench --model-path DIR``: the benchmark measures that checkpoint (not a random demo of --size)
and says which; with ``--trials``, the reduced-precision and OpenVINO rows carry each operating point's flips as a
fraction of the trials, the EER's change in points and each minDCF's change, as
:func:`w2vlab.corpus._trials.compare_embeddings` finds them on the same embeddings."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from w2vlab._contract import InputError
from w2vlab.bench import _harness as bench
from w2vlab.bench._context import CUSTOM, make_context
from w2vlab.bench._metrics_precision import DECISION_GATE, precision_quality
from w2vlab.bench._procs import ChildRun
from w2vlab.corpus._trials import compare_embeddings, read_trials
from w2vlab.model._demo import write_demo_checkpoint

CORPUS = Path(__file__).parent / "data" / "corpus"  # 320 trials of 20 utterances


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights_of(folder: Path) -> dict[str, str]:
    """sha256 of each weights file in ``folder``, computed here (not by the code under test)."""
    return {p.name: sha256_of(p) for p in sorted(folder.glob("*.safetensors"))}


def test_model_path_refuses_a_missing_folder_a_file_and_a_size_beside_it(tmp_path, tiny_dir, capsys):
    weights = tiny_dir / "model.safetensors"
    cases = (
        (["--model-path", str(tmp_path / "nope")], r"--model-path .*nope does not exist; expected a checkpoint folder"),
        (["--model-path", str(weights)], r"--model-path .*model.safetensors is not a directory; expected"),
        (["--model-path", str(tiny_dir), "--size", "small"], r"--size small and --model-path .* both given"),
    )
    for argv, message in cases:
        with pytest.raises(SystemExit):
            bench.main(argv)
        assert re.search(message, capsys.readouterr().err), argv
    with pytest.raises(InputError, match="--size full and --model-path"):
        bench.run("full", workdir=tmp_path, model_path=tiny_dir)
    with pytest.raises(InputError, match="give it with --model-path"):
        make_context(CUSTOM, True, 1, tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_model_path_is_measured_in_place_and_named_in_the_result(tmp_path, tiny_dir, tiny_all_formats, monkeypatch):
    """No demo is written; the export reads the folder given; the result says size "custom" and which model."""
    model = tmp_path / "my_model"
    shutil.copytree(tiny_dir, model)
    exported = []

    def fake_export(ctx):  # the session's export of the same weights, standing in for a 30 s export
        exported.append(ctx.ckpt)
        shutil.copytree(tiny_all_formats[0], ctx.art)
        return {"export_peak_rss": {"target": "-", "met": True}}

    monkeypatch.setattr(bench, "metric_export_peak_rss", fake_export)
    monkeypatch.setattr("w2vlab.model._demo.write_demo_checkpoint", lambda *a, **k: pytest.fail("wrote a demo"))
    work = tmp_path / "work"
    result = bench.run(quick=True, workdir=work, only=["export_peak_rss"], model_path=model)
    assert exported == [model] and sorted(p.name for p in work.iterdir()) == ["artifact_custom"]
    assert result["size"] == "custom" and result["failed"] == {}
    assert result["model"] == {
        "name": "my_model",
        "model_path": str(model),
        "random_demo": False,
        "source_weights_sha256": weights_of(model),
    }


def test_reuse_with_model_path_refuses_an_artifact_of_other_weights(tmp_path, tiny_dir, tiny_all_formats, capsys):
    work, mine, other = tmp_path / "work", tmp_path / "mine", tmp_path / "other"
    shutil.copytree(tiny_dir, mine)
    write_demo_checkpoint(other, seed=1)
    shutil.copytree(tiny_all_formats[0], work / "artifact_custom")
    ctx = make_context(None, True, 1, work, reuse=True, model_path=mine)
    assert ctx.ckpt == mine and ctx.size == CUSTOM
    for model, message in (
        (other, r"exported from weights with sha256 .* but --model-path .*other holds"),
        (tmp_path / "nope", "does not exist"),
    ):
        with pytest.raises(SystemExit):
            bench.main(["--model-path", str(model), "--workdir", str(work), "--reuse"])
        assert re.search(message, capsys.readouterr().err), model
    with pytest.raises(SystemExit):  # a random demo's reuse still needs the demo's own files
        bench.main(["--size", "tiny", "--workdir", str(work), "--reuse"])
    assert re.search(r"earlier --size tiny run there; missing: .*demo_tiny", capsys.readouterr().err)


@pytest.mark.slow  # a real export of the trained demo (about 30 s on 2 cores)
def test_the_trained_demo_is_what_the_artifact_was_exported_from(tmp_path):
    from w2vlab.model._demo import write_trained_checkpoint

    model = write_trained_checkpoint(tmp_path / "trained")
    path = tmp_path / "b.json"
    argv = ["--model-path", str(model), "--quick", "--workdir", str(tmp_path / "w"), "--only", "export_peak_rss"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert bench.main([*argv, "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["size"] == "custom" and result["model"]["source_weights_sha256"] == weights_of(model)
    metadata = json.loads((tmp_path / "w" / "artifact_custom" / "metadata.json").read_text())
    assert metadata["source_weights_sha256"] == weights_of(model)
    assert not list((tmp_path / "w").glob("demo_*"))


def unit_embeddings(keys, seed: int = 0, dim: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (lambda v: v / np.linalg.norm(v))(rng.standard_normal(dim)) for k in keys}


@pytest.fixture(scope="module")
def corpus_case():
    """The corpus trials, reference embeddings that separate the speakers (a speaker's utterances share a
    direction) and the parity clips' samples."""
    trials = read_trials(CORPUS / "trials.txt")
    keys = sorted({k for pair in zip(trials.enroll, trials.test) for k in pair})
    speakers = unit_embeddings(sorted({k.split("-")[0] for k in keys}), seed=1)
    noise = unit_embeddings(keys, seed=2)
    ref = {f"utt:{k}": speakers[k.split("-")[0]] + 0.8 * noise[k] for k in keys}
    ref |= unit_embeddings(["clip10", "synth_560"], seed=3)
    return trials, keys, ref, {"clip10": 160000, "synth_560": 560}


def independent(ref, cand, trials) -> dict:
    strip = lambda emb: {k.removeprefix("utt:"): v for k, v in emb.items() if k.startswith("utt:")}  # noqa: E731
    return compare_embeddings(strip(ref), strip(cand), trials).summary()


def nudged(ref: dict, keys, scale: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {**ref, **{f"utt:{k}": ref[f"utt:{k}"] + scale * rng.standard_normal(16) for k in keys}}


def test_decision_fields_agree_with_compare_embeddings_on_the_same_embeddings(corpus_case):
    trials, keys, ref, samples = corpus_case
    cand = nudged(ref, keys, 0.3, seed=4)
    quality, want = precision_quality(ref, cand, samples, trials), independent(ref, cand, trials)
    assert want["n_flips"] > 0 and len(trials) == 320  # the case really flips decisions
    eer = want["points"][0]
    assert eer["name"] == "EER"
    assert quality["delta_eer_points"] == pytest.approx(100 * (eer["candidate"] - eer["reference"]), abs=1e-12)
    assert quality["eer_points"] == pytest.approx(
        {"reference": 100 * eer["reference"], "candidate": 100 * eer["candidate"]}
    )
    assert quality["flip_fraction_by_point"] == {p["name"]: p["n_flips"] / 320 for p in want["points"]}
    assert quality["delta_min_dcf"] == {
        p["name"]: pytest.approx(p["candidate"] - p["reference"], abs=1e-12) for p in want["points"][1:]
    }
    assert set(quality["delta_min_dcf"]) == {"minDCF@0.01", "minDCF@0.005"}
    assert quality["trial_points"] == want["points"]
    assert quality["flips"] == want["n_flips"] and quality["flips_by_point"]["EER"] == eer["n_flips"]  # kept keys
    worst = max(p["n_flips"] for p in want["points"]) / 320
    passed = worst <= 0.001 and abs(100 * (eer["candidate"] - eer["reference"])) <= 0.1
    assert quality["decision_gate"] == {"max_flip_fraction": 0.001, "max_abs_delta_eer_points": 0.1, "passed": passed}
    assert not passed  # one flip in 320 trials is already 0.3%


def test_the_same_embeddings_pass_the_decision_gate(corpus_case):
    trials, _, ref, samples = corpus_case
    same = precision_quality(ref, dict(ref), samples, trials)
    assert same["delta_eer_points"] == 0 and set(same["delta_min_dcf"].values()) == {0.0}
    assert set(same["flip_fraction_by_point"].values()) == {0.0} and same["decision_gate"]["passed"]
    assert DECISION_GATE == {"max_flip_fraction": 0.001, "max_abs_delta_eer_points": 0.1}  # issue #29's bar
    assert "delta_eer_points" not in precision_quality(ref, dict(ref), samples, None)  # without --trials: absent


def test_openvino_rows_carry_the_decision_fields_of_their_own_embeddings(corpus_case, tmp_path):
    """The OpenVINO family's rows (:func:`candidate_rows`) on a child's output: each runner's fields are those
    of its own embeddings against the reference."""
    from w2vlab.bench._metrics_openvino import candidate_rows

    trials, keys, ref, samples = corpus_case
    cands = {"openvino-f32": dict(ref), "openvino-bf16": nudged(ref, keys, 0.3, seed=5)}
    out = tmp_path / "out.npz"
    np.savez(out, **{f"{r}/{n}": v[None] for r, emb in cands.items() for n, v in emb.items()})
    child = ChildRun(1.0, 1.0, {"s": {r: 0.5 for r in cands}, "eager_s": 1.0, "builds": {}})
    rows = candidate_rows(child, out, ref, samples, trials, 1e9, {"fp32": 1e10, "bf16": 1e10})
    for runner, cand in cands.items():
        want = independent(ref, cand, trials)
        assert rows[runner]["trial_points"] == want["points"], runner
        assert rows[runner]["delta_eer_points"] == pytest.approx(100 * want["points"][0]["difference"], abs=1e-12)
    assert rows["openvino-f32"]["decision_gate"]["passed"] and not rows["openvino-bf16"]["decision_gate"]["passed"]
