"""embed-corpus: sources, batching, failures, resume and the CLI, against one-by-one references.

Every batched embedding is compared with the same clip embedded alone by an independent path
(``load_artifact(...).embed_file``, or the eager model on the HF extractor's features), at
``atol=1e-5``: batching pads, and padding must not change a clip's embedding.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from w2vlab._audio import prepare_waveform, read_audio
from w2vlab._features import extractor_inputs
from w2vlab.cli import main
from w2vlab.corpus import _embed as corpus
from w2vlab.corpus._embed import (
    ARK,
    FAILURES,
    PROGRESS,
    SCP,
    SUMMARY,
    ArtifactEmbedder,
    CorpusItem,
    embed_corpus,
    plan_batches,
    read_source,
)
from w2vlab.export._pipeline import export
from w2vlab.export._suite import build_suite
from w2vlab.model._checkpoint import feature_extractor_for, load_speaker_encoder
from w2vlab.model._eager import EagerEmbedder
from w2vlab.runtime._artifact import load_artifact

ATOL = 1e-5  # batched vs one-by-one: float32 padding/masking differences only
BUDGET = 8.0  # seconds: small enough that the 0.5-3 s clips share batches, the 8 s one goes alone
BAD = {"corrupt": "Format not recognised", "empty": "no audio samples", "short": "too short", "nan": "NaN/Inf"}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, tiny_dir) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "art"
    export(
        tiny_dir,
        out,
        modes=("preprocessed", "waveform"),
        cases=build_suite(lengths=(16000,), batches=()),
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def embedders(artifact) -> dict[str, ArtifactEmbedder]:
    return {mode: ArtifactEmbedder(artifact, mode) for mode in ("preprocessed", "waveform")}


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory, speech_files) -> Path:
    """The committed speech clips (a third in spk/) plus four bad files and a non-audio file."""
    root = tmp_path_factory.mktemp("corpus") / "audio"
    (root / "spk").mkdir(parents=True)
    for i, path in enumerate(speech_files):
        shutil.copy(path, root / ("spk" if i % 3 == 0 else ".") / path.name)
    (root / "corrupt.wav").write_bytes(b"this is not audio" * 10)
    sf.write(root / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(root / "short.wav", np.full(100, 0.1, np.float32), 16000)
    nan = np.full(16000, 0.1, np.float32)
    nan[500] = np.nan
    sf.write(root / "nan.wav", nan, 16000, subtype="FLOAT")
    (root / "notes.txt").write_text("not audio, not listed")
    return root


def good_files(audio_dir: Path) -> dict[str, Path]:
    """key -> path of every readable speech clip, keyed as a directory source keys them."""
    return {
        str(p.relative_to(audio_dir).with_suffix("")).replace("/", "-"): p
        for p in sorted(audio_dir.rglob("speech_*.wav"))
    }


def embeddings(out: Path) -> dict[str, np.ndarray]:
    lines = (out / SCP).read_text().splitlines()
    keys = [line.split()[0] for line in lines]
    assert len(keys) == len(set(keys)), f"a key was written twice: {keys}"
    return {k: np.asarray(v) for k, v in kaldiio.load_scp(str(out / SCP)).items()}


def failures(out: Path) -> dict[str, str]:
    lines = (out / FAILURES).read_text().splitlines()
    assert lines[0] == "key\tpath\treason"
    return {line.split("\t")[0]: line.split("\t")[2] for line in lines[1:]}


@pytest.fixture(scope="module")
def clean_runs(tmp_path_factory, audio_dir, embedders) -> dict[str, Path]:
    """One uninterrupted run per mode, the reference for resumed and parallel runs."""
    root = tmp_path_factory.mktemp("clean")
    for mode, embedder in embedders.items():
        embed_corpus(audio_dir, root / mode, embedder, batch_seconds=BUDGET, progress=False)
    return {mode: root / mode for mode in embedders}


class Flaky:
    """An embedder that raises ``exc`` on its ``fail_on``-th batch and otherwise delegates."""

    def __init__(self, inner, fail_on: int, exc: BaseException, identity=None):
        self.inner, self.fail_on, self.exc, self.calls = inner, fail_on, exc, 0
        self.identity = identity or inner.identity
        self.sample_rate, self.min_num_samples, self.mode, self.prepare = (
            inner.sample_rate,
            inner.min_num_samples,
            inner.mode,
            inner.prepare,
        )

    def embed(self, inputs):
        self.calls += 1
        if self.calls == self.fail_on:
            raise self.exc
        return self.inner.embed(inputs)


# --------------------------------------------------------------------------- sources and planning


def test_directory_source_is_recursive_sorted_and_keyed_by_relative_path(audio_dir):
    items = read_source(audio_dir)
    keys = [i.key for i in items]
    assert [i.path for i in items] == sorted(i.path for i in items)
    assert set(keys) == set(good_files(audio_dir)) | set(BAD)
    assert any(k.startswith("spk-speech_") for k in keys) and "notes" not in keys


def test_plan_batches_respects_the_padded_budget():
    lengths = [0.5, 8.0, 3.0, 2.0, 2.0, 1.0, 1.0, 1.0, 30.0, 2.5]
    sized = [(CorpusItem(f"k{i}", Path(f"{i}.wav")), s) for i, s in enumerate(lengths)]
    seconds = {item.key: s for item, s in sized}
    batches = plan_batches(sized, BUDGET)
    flat = [item.key for batch in batches for item in batch]
    assert sorted(flat) == sorted(seconds) and len(flat) == len(set(flat))  # every clip exactly once
    maxima = [max(seconds[i.key] for i in batch) for batch in batches]
    assert maxima == sorted(maxima, reverse=True)  # longest first
    for batch, longest in zip(batches, maxima):
        assert len(batch) == 1 or longest * len(batch) <= BUDGET, [i.key for i in batch]
    assert [i.key for i in batches[0]] == ["k8"]  # 30 s > budget: alone
    assert max(len(b) for b in batches) > 2
    with pytest.raises(ValueError, match="batch_seconds must be > 0"):
        plan_batches(sized, 0)


def test_duplicate_keys_fail_before_anything_is_written(tmp_path, audio_dir, embedders):
    scp = tmp_path / "wav.scp"
    scp.write_text(f"a {audio_dir}/short.wav\nb {audio_dir}/nan.wav\na {audio_dir}/empty.wav\n")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="duplicate keys") as err:
        embed_corpus(scp, out, embedders["preprocessed"], progress=False)
    assert "wav.scp line 1: 'a " in str(err.value) and "wav.scp line 3: 'a " in str(err.value)
    assert "empty.wav" in str(err.value) and "short.wav" in str(err.value)
    assert not out.exists()
    clash = tmp_path / "clash"
    (clash / "x").mkdir(parents=True)
    shutil.copy(audio_dir / "short.wav", clash / "x-y.wav")
    shutil.copy(audio_dir / "short.wav", clash / "x" / "y.flac")
    with pytest.raises(ValueError, match=r"'x-y': file x/y.flac and file x-y.wav"):
        read_source(clash)


def test_malformed_lists_are_refused_with_the_line(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("a a.wav\nb sox b.flac -t wav - |\n")
    with pytest.raises(ValueError, match=r"wav.scp line 2: .*piped commands .* are not supported"):
        read_source(scp)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio_filepath": "a.wav"}\n{"audio_filepath": "b.wav", "offset": -1}\n')
    with pytest.raises(ValueError, match=r"m.jsonl line 2: .*'offset' must be a number of seconds >= 0"):
        read_source(manifest)
    manifest.write_text('{"audio_filepath": "a.wav"}\nnot json\n')
    with pytest.raises(ValueError, match=r"m.jsonl line 2: .*not a JSON object"):
        read_source(manifest)


# --------------------------------------------------------------------------- equality with one-by-one


@pytest.mark.parametrize("mode", ["preprocessed", "waveform"])
def test_batched_equals_one_by_one_and_bad_files_are_listed(mode, artifact, audio_dir, clean_runs):
    out = clean_runs[mode]
    art = load_artifact(artifact, mode)
    got, good = embeddings(out), good_files(audio_dir)
    assert sorted(got) == sorted(good)
    for key, path in good.items():
        np.testing.assert_allclose(got[key], art.embed_file(path).numpy(), rtol=0, atol=ATOL, err_msg=key)
    reasons = failures(out)
    assert sorted(reasons) == sorted(BAD)
    for key, needle in BAD.items():
        assert needle in reasons[key], reasons[key]
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["batches"] < len(good)  # clips really were batched together


def test_eager_batched_equals_one_by_one(tmp_path, tiny_dir, audio_dir):
    out = tmp_path / "eager"
    result = embed_corpus(audio_dir, out, EagerEmbedder(tiny_dir), batch_seconds=BUDGET, progress=False)
    loaded = load_speaker_encoder(tiny_dir)
    fe = feature_extractor_for(loaded)
    got = embeddings(out)
    assert result.identity["kind"] == "eager" and result.identity["source_sha256"] == loaded.source_sha256
    assert sorted(got) == sorted(good_files(audio_dir)) and result.batches < len(got)
    for key, path in good_files(audio_dir).items():
        wave = prepare_waveform(*read_audio(path), fe.sampling_rate)
        with torch.inference_mode():
            ref = loaded.model(*extractor_inputs(fe, [wave]))[0].numpy()
        np.testing.assert_allclose(got[key], ref, rtol=0, atol=ATOL, err_msg=key)


def test_wav_scp_source_resolves_relative_paths_and_lists_a_missing_file(tmp_path, artifact, audio_dir, embedders):
    listed = tmp_path / "lists" / "wav.scp"
    listed.parent.mkdir()
    shutil.copytree(audio_dir, tmp_path / "lists" / "audio")
    good = good_files(audio_dir)
    lines = [f"utt{i} audio/{p.relative_to(audio_dir).as_posix()}" for i, p in enumerate(good.values())]
    listed.write_text("\n".join(lines + ["gone audio/missing.wav", "bad audio/short.wav"]) + "\n")
    out = tmp_path / "out"
    result = embed_corpus(listed, out, embedders["waveform"], batch_seconds=BUDGET, progress=False)
    assert (result.files, result.done, result.failed) == (len(good) + 2, len(good), 2)
    reasons = failures(out)
    assert "audio file not found" in reasons["gone"] and "too short" in reasons["bad"]
    art, got = load_artifact(artifact, "waveform"), embeddings(out)
    for i, path in enumerate(good.values()):
        np.testing.assert_allclose(got[f"utt{i}"], art.embed_file(path).numpy(), rtol=0, atol=ATOL)


def test_jsonl_offset_and_duration_read_only_that_span(tmp_path, artifact, embedders, speech_files):
    long = next(p for p in speech_files if "slow_8s" in p.name)
    manifest = tmp_path / "manifest.jsonl"
    entries = [
        {"audio_filepath": str(long), "key": "seg", "offset": 1.25, "duration": 2.5},
        {"audio_filepath": str(long), "key": "tail", "offset": 6.0},
        {"audio_filepath": str(speech_files[0]), "duration": 100.0},
    ]  # key: the stem; duration past the end
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))
    out = tmp_path / "out"
    embed_corpus(manifest, out, embedders["preprocessed"], progress=False)
    got = embeddings(out)
    art = load_artifact(artifact, "preprocessed")
    full, sr = sf.read(str(long), dtype="float32")
    by_hand = {"seg": full[int(1.25 * sr) : int(1.25 * sr) + int(2.5 * sr)], "tail": full[6 * sr :]}
    for key, wave in by_hand.items():
        np.testing.assert_allclose(got[key], art.embed(wave, sr).numpy(), rtol=0, atol=ATOL, err_msg=key)
    np.testing.assert_allclose(got[speech_files[0].stem], art.embed_file(speech_files[0]).numpy(), rtol=0, atol=ATOL)


# --------------------------------------------------------------------------- resume


def assert_same_as(out: Path, clean: Path) -> None:
    got, ref = embeddings(out), embeddings(clean)
    assert sorted(got) == sorted(ref)
    for key in ref:
        np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=ATOL, err_msg=key)
    assert (out / ARK).stat().st_size == (clean / ARK).stat().st_size  # nothing left over from the crash


def test_resume_after_keyboard_interrupt(tmp_path, audio_dir, embedders, clean_runs):
    out = tmp_path / "out"
    flaky = Flaky(embedders["preprocessed"], fail_on=2, exc=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        embed_corpus(audio_dir, out, flaky, batch_seconds=BUDGET, progress=False)
    first = embeddings(out)
    assert 0 < len(first) < len(good_files(audio_dir)) and not (out / SUMMARY).exists()
    result = embed_corpus(audio_dir, out, embedders["preprocessed"], batch_seconds=BUDGET, progress=False)
    assert result.skipped == len(first) and result.done + result.skipped == len(good_files(audio_dir))
    assert_same_as(out, clean_runs["preprocessed"])
    again = embed_corpus(audio_dir, out, embedders["preprocessed"], batch_seconds=BUDGET, progress=False)
    assert (again.done, again.skipped, again.failed) == (0, len(good_files(audio_dir)), len(BAD))  # bad ones retried


def test_resume_after_a_crash_between_ark_append_and_commit(tmp_path, audio_dir, embedders, clean_runs, monkeypatch):
    real, calls = kaldiio.save_ark, []

    def crash_on_second(ark, arrays, scp=None, append=False):
        calls.append(list(arrays))
        if len(calls) == 2:
            real(ark, arrays, append=append)  # the ark gets the batch, the scp and progress.json do not
            raise RuntimeError("simulated crash")
        real(ark, arrays, scp=scp, append=append)

    out = tmp_path / "out"
    monkeypatch.setattr(corpus.kaldiio, "save_ark", crash_on_second)
    with pytest.raises(RuntimeError, match="simulated crash"):
        embed_corpus(audio_dir, out, embedders["waveform"], batch_seconds=BUDGET, progress=False)
    monkeypatch.setattr(corpus.kaldiio, "save_ark", real)
    committed = json.loads((out / PROGRESS).read_text())["ark_bytes"]
    assert (out / ARK).stat().st_size > committed  # the uncommitted batch is in the ark
    assert sorted(embeddings(out)) == sorted(calls[0])
    result = embed_corpus(audio_dir, out, embedders["waveform"], batch_seconds=BUDGET, progress=False)
    assert result.skipped == len(calls[0])
    assert_same_as(out, clean_runs["waveform"])


def test_resume_with_another_embedder_is_refused_and_force_starts_over(tmp_path, audio_dir, embedders, clean_runs):
    out = tmp_path / "out"
    shutil.copytree(clean_runs["preprocessed"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    other = Flaky(
        embedders["preprocessed"],
        0,
        RuntimeError(),
        identity={**embedders["preprocessed"].identity, "content_sha256": "0" * 64},
    )
    for embedder, needle in ((embedders["waveform"], '"mode": "waveform"'), (other, "0" * 64)):
        with pytest.raises(ValueError, match="resuming would mix two embedders") as err:
            embed_corpus(audio_dir, out, embedder, progress=False)
        assert needle in str(err.value) and '"mode": "preprocessed"' in str(err.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # refused before touching anything
    result = embed_corpus(audio_dir, out, embedders["waveform"], batch_seconds=BUDGET, force=True, progress=False)
    assert result.skipped == 0 and result.identity["mode"] == "waveform"
    assert_same_as(out, clean_runs["waveform"])


def test_a_foreign_directory_is_refused_even_with_force(tmp_path, audio_dir, embedders):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    for force in (False, True):
        with pytest.raises(FileExistsError, match="holds no embed-corpus output"):
            embed_corpus(audio_dir, out, embedders["preprocessed"], force=force, progress=False)
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


# --------------------------------------------------------------------------- workers, summary, CLI


def test_two_workers_give_the_same_embeddings(tmp_path, audio_dir, embedders, clean_runs):
    out = tmp_path / "out"
    result = embed_corpus(audio_dir, out, embedders["preprocessed"], batch_seconds=BUDGET, workers=2, progress=False)
    assert result.workers == 2 and sorted(failures(out)) == sorted(BAD)
    got, ref = embeddings(out), embeddings(clean_runs["preprocessed"])
    assert sorted(got) == sorted(ref)
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)  # same batches, same process for the model


def test_summary_json_records_the_run(clean_runs, audio_dir, embedders):
    summary = json.loads((clean_runs["waveform"] / SUMMARY).read_text())
    n_good = len(good_files(audio_dir))
    assert (summary["files"], summary["done"], summary["failed"], summary["skipped"]) == (
        n_good + len(BAD),
        n_good,
        len(BAD),
        0,
    )
    expected_audio = sum(len(prepare_waveform(*read_audio(p), 16000)) for p in good_files(audio_dir).values()) / 16000
    assert summary["audio_seconds"] == pytest.approx(expected_audio)
    assert summary["throughput"] == pytest.approx(summary["audio_seconds"] / summary["wall_seconds"])
    assert (summary["engine"], summary["batch_seconds"], summary["workers"]) == ("local", BUDGET, 0)
    assert summary["identity"] == embedders["waveform"].identity
    assert summary["identity"]["content_sha256"] and summary["identity"]["format"] == "torchscript"
    assert summary["versions"]["torch"] == torch.__version__ and summary["versions"]["w2vlab"]


def run_cli(argv: list[str]) -> tuple[int, list[str]]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(argv)
    return code, printed.getvalue().splitlines()


def test_cli_exits_non_zero_and_says_how_many_failed(tmp_path, artifact, audio_dir, tiny_dir):
    out = tmp_path / "out"
    code, lines = run_cli(
        [
            "embed-corpus",
            str(audio_dir),
            "--output",
            str(out),
            "--artifact",
            str(artifact),
            "--mode",
            "waveform",
            "--batch-seconds",
            "8",
        ]
    )
    assert code == 1 and lines[-1] == f"{len(BAD)} failed (see {out / FAILURES})"
    clean = tmp_path / "clean"
    clean.mkdir()
    for path in good_files(audio_dir).values():
        shutil.copy(path, clean / path.name)
    code, lines = run_cli(
        ["embed-corpus", str(clean), "--output", str(tmp_path / "eager"), "--model-path", str(tiny_dir)]
    )
    assert code == 0 and lines[-1].startswith(f"embedded {len(good_files(audio_dir))} of ")
    assert json.loads((tmp_path / "eager" / PROGRESS).read_text())["identity"]["kind"] == "eager"
    code, _ = run_cli(
        ["embed-corpus", str(clean), "--output", str(tmp_path / "x"), "--model-path", str(tiny_dir), "--format", "onnx"]
    )
    assert code == 2 and not (tmp_path / "x").exists()
