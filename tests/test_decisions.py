"""The int8 copy gated on decisions (issue #29 §3): measured against the eager model, searched, refused.

The exporter's numbers are checked against an independent path: the eager model as its checkpoint
loads (HF extractor + ``load_speaker_encoder``) and the written copy as a consumer opens it
(``load_artifact(..., format="onnx-int8")``, clip by clip), scored with ``compare_embeddings``.  The
evaluation set is the trained demo's held-out voices (``tests/data/voices_eval``), so the
decisions mean something: the random demo's scores all sit near 0.99.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from w2vlab._audio import prepare_waveform
from w2vlab._contract import FILES, InputError, onnx_available
from w2vlab.cli import main
from w2vlab.corpus._embed import read_clip, read_source
from w2vlab.corpus._trials import compare_embeddings, read_trials
from w2vlab.export._decisions import DecisionGate
from w2vlab.export._int8 import count_matmuls, in_blocks, quantisable_blocks
from w2vlab.export._pipeline import export
from w2vlab.export._suite import named_suite
from w2vlab.model._checkpoint import feature_extractor_for, load_speaker_encoder
from w2vlab.model._demo import write_trained_checkpoint
from w2vlab.runtime._artifact import load_artifact

pytestmark = pytest.mark.skipif(not onnx_available(), reason="needs the [onnx] extra")
VOICES = Path(__file__).parent / "data" / "voices_eval"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return write_trained_checkpoint(tmp_path_factory.mktemp("trained") / "demo")


def _export(trained: Path, out: Path, eval_dir: Path | None, gate: DecisionGate = DecisionGate()):
    return export(
        trained,
        out,
        formats=("torchscript", "onnx-int8"),
        cases=named_suite("quick"),
        eval_trials=eval_dir,
        gate=gate,
        progress=False,
    )


def _independent(trained: Path, artifact: Path, eval_dir: Path):
    """The copy's decisions as a user would measure them: eager vs the consumer's loader, compare_embeddings."""
    loaded = load_speaker_encoder(trained)
    fe = feature_extractor_for(loaded)
    art = load_artifact(artifact, format="onnx-int8")
    ref, cand = {}, {}
    with torch.inference_mode():
        for item in read_source(eval_dir / "wav.scp"):
            wave = prepare_waveform(*read_clip(item))
            feats = fe(wave, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
            ref[item.key] = loaded.model(feats["input_features"], feats["attention_mask"])[0].numpy()
            cand[item.key] = art.embed(wave, 16000).numpy()
    return compare_embeddings(ref, cand, read_trials(eval_dir / "trials.txt"))


@pytest.fixture(scope="module")
def gated(trained, tmp_path_factory):
    """The trained demo's int8 copy gated on all of its evaluation trials (11,175), as the default gate has it."""
    return _export(trained, tmp_path_factory.mktemp("gated") / "art", VOICES)


def test_the_exporters_decisions_are_what_a_user_measures(trained, gated):
    entry = gated.metadata["artifacts"]["preprocessed"]["formats"]["onnx-int8"]["decisions"]
    user = _independent(trained, gated.output, VOICES)
    assert entry["gated"] and entry["trials"] == len(user.reference.trials) == 11175
    assert [p["flips"] for p in entry["points"]] == [p.n_flips for p in user.points]
    assert entry["eer_change_points"] == pytest.approx(100 * user.points[0].difference, abs=1e-9)
    assert entry["passed"] == (
        max(p.n_flips for p in user.points) <= 0.001 * len(user.reference.trials)
        and abs(user.points[0].difference) <= 0.001
    )
    card = (gated.output / "README.md").read_text()
    assert "Decisions (preprocessed) on `voices_eval` (11175 trials, 150 clips" in card


def test_a_copy_that_misses_the_gate_keeps_its_most_sensitive_blocks_fp32(trained, gated, tmp_path):
    """A gate the first recipe misses (half its worst flip rate, or zero flips): the search ranks the blocks
    and keeps them fp32 one at a time; what it keeps is the written file's recipe, counted in its graph."""
    base = gated.metadata["artifacts"]["preprocessed"]["formats"]["onnx-int8"]
    gate = DecisionGate(max_flip_percent=base["decisions"]["max_flip_percent"] / 2, max_eer_change_points=100.0)
    assert base["decisions"]["max_flip_percent"] > 0  # else half of it is the same gate
    result = _export(trained, tmp_path / "art", VOICES, gate)
    assert not result.refused, result.metadata.get("refused")
    file_entry = result.metadata["artifacts"]["preprocessed"]["formats"]["onnx-int8"]
    entry = file_entry["decisions"]
    steps = entry["steps"]
    assert len(steps) >= 2 and not steps[0]["passed"] and steps[-1]["passed"]
    added = steps[-1]["kept_fp32_added"]
    ranking = [r["block"] for r in entry["ranking"]]
    assert added == ranking[: len(added)] and len(ranking) == len(set(ranking)) >= len(added) + 1
    assert file_entry["quantisation"]["kept_fp32"][-len(added) :] == added
    assert file_entry["matmuls"]["float_weights"] > base["matmuls"]["float_weights"]
    user = _independent(trained, result.output, VOICES)
    assert max(p.n_flips for p in user.points) <= gate.max_flip_percent / 100 * len(user.reference.trials)
    assert [p["flips"] for p in entry["points"]] == [p.n_flips for p in user.points]
    assert result.reports["preprocessed"].passed and result.format_reports["onnx-int8"]["preprocessed"].passed


def test_a_copy_the_search_cannot_save_is_refused_alone(trained, gated, tmp_path, capsys):
    """A zero gate the first recipe misses (it flips some trials, measured above), no block allowed fp32."""
    assert gated.metadata["artifacts"]["preprocessed"]["formats"]["onnx-int8"]["decisions"]["max_flip_percent"] > 0
    out = tmp_path / "art"
    argv = ["export", "--model-path", str(trained), "--output", str(out), "--format", "onnx-int8", "--suite", "quick"]
    gate = ["--eval-trials", str(VOICES), "--max-flip-percent", "0", "--max-eer-change", "0", "--max-kept-blocks", "0"]
    assert main(argv + gate) == 1
    metadata = json.loads((out / "metadata.json").read_text())
    refused = metadata["refused"]["onnx-int8"]["preprocessed"]
    assert refused["failed_clips"] == [] and not refused["decisions"]["passed"]
    assert (
        not (out / FILES["onnx-int8", "preprocessed"]).exists()
        and (out / FILES["torchscript", "preprocessed"]).exists()
    )
    assert "onnx-int8 REFUSED: missed the decision gate" in capsys.readouterr().err
    assert "missed the decision gate" in (out / "README.md").read_text()


def test_without_an_evaluation_set_the_copy_says_it_is_not_gated(tiny_all_formats):
    art = tiny_all_formats[0]
    entry = json.loads((art / "metadata.json").read_text())["artifacts"]["preprocessed"]["formats"]["onnx-int8"]
    assert entry["decisions"]["gated"] is False and "--eval-trials" in entry["decisions"]["why"]
    assert "Decisions (preprocessed): **not gated**" in (art / "README.md").read_text()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "trials.txt").unlink(), "no trials.txt"),
        (lambda d: (d / "wav.scp").write_text("e00-u01 wav/e00_u01.flac\n"), "clip(s)"),
        (lambda d: (d / "trials.txt").write_text("1 e00-u01 e00-u02\n"), "0 non-target"),
    ],
)
def test_a_bad_evaluation_set_fails_before_any_work(trained, tmp_path, damage, message):
    bad = tmp_path / "eval"
    shutil.copytree(VOICES, bad, ignore=shutil.ignore_patterns("*.tsv", "utt2spk"))
    damage(bad)
    with pytest.raises(InputError, match=message):
        _export(trained, tmp_path / "art", bad)
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize(
    "field", [{"max_flip_percent": -0.1}, {"max_eer_change_points": float("nan")}, {"max_kept_blocks": -1}]
)
def test_a_gate_must_be_a_gate(field):
    with pytest.raises(InputError, match="DecisionGate"):
        DecisionGate(**field)


def test_blocks_are_named_by_class_or_by_module_path(tiny_all_formats):
    import onnx

    fp32 = tiny_all_formats[0] / FILES["onnx", "preprocessed"]
    blocks = quantisable_blocks(fp32)
    assert "model.encoder.encoder.layers.0" in blocks and "model.encoder.feature_projection" not in blocks
    graph = onnx.load(str(fp32), load_external_data=False).graph
    inside = [n for n in graph.node if in_blocks(n, frozenset({"model.encoder.encoder.layers.0"}))]
    assert inside and all(in_blocks(n, frozenset({"Wav2Vec2BertEncoderLayer"})) for n in inside)
    assert not any(in_blocks(n, frozenset({"model.encoder.encoder.layers.1"})) for n in inside)
    assert count_matmuls(fp32)["integer"] == 0
