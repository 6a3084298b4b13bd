"""The packaged trained demo model (w2vlab/model/data/demo_trained/, issue #27).

Its weights are the files ``scripts/train_demo_speaker.py`` wrote (sha256 recorded in
``training.json`` when they were written), its training speakers are disjoint from every
evaluation speaker, and on the committed evaluation set (tests/data/voices_eval: 25 held-out
espeak-ng voices, 150 clips, 11175 trials) it separates voices: EER <= 5% and mean target minus
mean non-target cosine >= 0.4, recomputed here with the eager model and w2vlab's own scoring.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from w2vlab.corpus._embed import embed_corpus
from w2vlab.corpus._trials import load_embeddings, read_trials, score_trials
from w2vlab.model._demo import TRAINED_DIR, write_trained_checkpoint
from w2vlab.model._eager import EagerEmbedder

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT / "tests" / "data" / "voices_eval"
EER_MAX, GAP_MIN = 0.05, 0.4  # issue #27's targets; the packaged model measures 4.78% and 0.66 (its README.md)


def _voices(tsv: Path) -> list[dict]:
    with tsv.open() as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _variant(voice: str) -> str:
    return voice.split("+", 1)[1] if "+" in voice else ""  # "" = espeak-ng's default voice


def test_weights_are_the_ones_training_wrote():
    record = json.loads((TRAINED_DIR / "training.json").read_text())
    for name in ("model.safetensors", "speaker_head.safetensors", "config.json", "speaker_head.json"):
        assert hashlib.sha256((TRAINED_DIR / name).read_bytes()).hexdigest() == record["sha256"][name], name
    size = sum((TRAINED_DIR / n).stat().st_size for n in ("model.safetensors", "speaker_head.safetensors"))
    assert size <= 20 * 2**20, size
    card = (TRAINED_DIR / "README.md").read_text()
    assert record["sha256"]["model.safetensors"] in card  # the card names the weights it describes


def test_training_speakers_are_disjoint_from_every_evaluation_speaker():
    # both corpora it was trained on: today's script and the one-language run of commit 667cbb9
    train = _voices(EVAL / "train_speakers.tsv") + _voices(EVAL / "train_speakers_667cbb9.tsv")
    evaluation = _voices(EVAL / "speakers.tsv")
    assert len(train) >= 200 and len(evaluation) >= 20
    train_voices = [v for s in train for v in s["voice"].split(",")]  # today's training speakers speak 6 languages
    train_variants = {_variant(v) for v in train_voices}
    train_langs = {v.split("+")[0] for v in train_voices}
    for s in evaluation:  # held-out variants (and the default voice) in held-out languages
        assert _variant(s["voice"]) not in train_variants, s
        assert s["voice"].split("+")[0] not in train_langs, s
    # tests/data/corpus's 8 voices, read from the script that made them: none is a training voice
    script = (ROOT / "scripts" / "make_corpus_fixtures.sh").read_text()
    corpus = re.findall(r'^\s+"(\w+)\s+([\w+-]+)\s+(\d+)\s+(\d+)\s+\w+"$', script, re.M)
    assert len(corpus) == 8, corpus
    train_configs = {(v, s["pitch"], s["wpm"]) for s in train for v in s["voice"].split(",")}
    for _, voice, pitch, wpm in corpus:
        assert (voice, pitch, wpm) not in train_configs
        assert _variant(voice) not in train_variants, voice


def test_trials_cover_the_evaluation_set():
    trials = read_trials(EVAL / "trials.txt")
    keys = {line.split()[0] for line in (EVAL / "wav.scp").read_text().splitlines()}
    assert len(trials) >= 2000 and set(trials.keys) == keys
    assert trials.n_target == 25 * 15 and trials.n_nontarget == len(trials) - trials.n_target


def test_cli_writes_the_trained_checkpoint_and_refuses_to_overwrite(tmp_path):
    from w2vlab.cli import main

    out = tmp_path / "trained"
    assert main(["demo-checkpoint", str(out), "--trained"]) == 0
    for p in TRAINED_DIR.iterdir():
        assert (out / p.name).read_bytes() == p.read_bytes(), p.name
    with pytest.raises(FileExistsError):
        write_trained_checkpoint(out)
    write_trained_checkpoint(out, overwrite=True)


def _scores(tmp_path: Path, scp: Path, trials_path: Path):  # as `embed-corpus --model-path` + `score-trials`
    embed_corpus(scp, tmp_path / "emb", EagerEmbedder(TRAINED_DIR), progress=False)
    return score_trials(load_embeddings(tmp_path / "emb"), read_trials(trials_path))


def _check(scores) -> None:
    labels = np.asarray(scores.trials.labels, dtype=bool)
    gap = scores.scores[labels].mean() - scores.scores[~labels].mean()
    eer, _ = scores.eer()
    assert eer <= EER_MAX and gap >= GAP_MIN, f"EER {eer:.4f} (bound {EER_MAX}), score gap {gap:.3f} (bound {GAP_MIN})"


def test_trained_demo_separates_held_out_voices(tmp_path):
    """All 11175 committed evaluation trials (150 clips embedded: ~14 s on a loaded 2-core machine)."""
    _check(_scores(tmp_path, EVAL / "wav.scp", EVAL / "trials.txt"))
