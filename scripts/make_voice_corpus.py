#!/usr/bin/env python3
"""Synthesise the demo speaker model's multi-speaker corpus with espeak-ng + sox.

    apt-get update && apt-get install -y espeak-ng sox
    python scripts/make_voice_corpus.py train /tmp/voices_train      # ~6 h of audio, not committed
    python scripts/make_voice_corpus.py eval tests/data/voices_eval  # committed evaluation set

A "speaker" is an espeak-ng voice configuration: (voice variant, language(s), pitch, speed).  The
variants (``espeak-ng --voices=variant``: formants, breathiness, pitch range) carry most of the
identity; pitch and speed separate speakers that share a variant.

Disjoint evaluation speakers.  ``HELD_OUT_VARIANTS`` (the five variants of the committed
``tests/data/corpus`` -- m1, m3, f2, f4, m7 -- plus 19 more drawn with the seed) and the default
voice (no variant; corpus speakers ``de``, ``fr``, ``es``) never appear in training, and neither do
the ``EVAL_LANGUAGES`` (de, fr, es and three more).  So no voice of ``tests/data/corpus`` nor of
the evaluation set is a training voice, whatever its pitch and speed.

* train: every training variant gives 4 speakers, one per pitch band (10-30, 30-50, 50-70,
  70-90), each with a speed in 130-210 wpm and 6 training languages drawn with the seed (its
  utterances take them in turn, so language is no cue to identity);
  24 utterances each, 1-6 s.
* eval: one speaker per held-out voice (24 variants + the default voice), an evaluation
  language and pitch/speed drawn with the seed; 6 utterances each, 1.2-3 s, FLAC.  Trials are
  all pairs of clips (enroll key < test key): same speaker = target.

Text: pseudo-words from a seeded RNG (consonant-vowel syllables, with numbers now and then),
read with the language's rules.  A clip is espeak-ng speech (22.05 kHz) resampled by sox
(``rate -v``, no dither) to 16 kHz mono 16-bit, with leading/trailing silence trimmed and 0.1 s
put back at each end; when it falls outside the length range, a word is dropped or added and
the utterance is synthesised again.  Every random choice comes from ``random.Random`` seeded by
a string, so reruns with the same espeak-ng / sox versions are byte-identical (made with
espeak-ng 1.51, SoX 14.4.2).

Output (in OUT): ``wav/<speaker>_<utt>.{wav,flac}``, ``wav.scp`` (``<key> <relative path>``),
``utt2spk``, ``speakers.tsv`` (the voice configuration of every speaker) and, for eval,
``trials.txt`` (VoxCeleb ``1|0 enroll test``) and ``train_speakers.tsv`` (the training speakers'
configurations, so the disjointness can be checked without the training audio), all sorted.
"""

from __future__ import annotations

import argparse
import itertools
import random
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SEED = 27
VARIANT_DIR = Path("/usr/lib/x86_64-linux-gnu/espeak-ng-data/voices/!v")
CORPUS_VARIANTS = ["m1", "m3", "f2", "f4", "m7"]  # tests/data/corpus: en+m1, en+m3, en+f2, en+f4, en-us+m7
N_EXTRA_HELD_OUT = 19
# Latin-script languages (pseudo-words are spelt in Latin letters).
TRAIN_LANGUAGES = (
    "af an bs ca cs cy da en-029 en-gb en-gb-scotland en-gb-x-rp en-us eo et eu fi ga gd hr ht hu ia id io is "
    "lb lfn lt lv mi ms mt nb nl om pap pt-br qu ro sk sl sq sw tn tr uz"
).split()
EVAL_LANGUAGES = "de fr-fr es it pl sv".split()
TRAIN = dict(
    per_variant_pitch_bands=[(10, 30), (30, 50), (50, 70), (70, 90)], rate=(130, 210), languages=6, utts=24, secs=(1, 6)
)
EVAL = dict(pitch=(15, 85), rate=(140, 200), utts=6, secs=(1.2, 3.0))
CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"


def variants() -> list[str]:
    """espeak-ng's variant names, sorted; names with spaces (``Mr serious``) are left out."""
    names = sorted(p.name for p in VARIANT_DIR.iterdir() if p.is_file() and " " not in p.name)
    missing = [v for v in CORPUS_VARIANTS if v not in names]
    if missing:
        sys.exit(f"espeak-ng variants {missing} not found in {VARIANT_DIR}")
    return names


def split_variants() -> tuple[list[str], list[str]]:
    """(training variants, held-out variants): the corpus variants and 19 seeded others are held out."""
    names = variants()
    rest = [v for v in names if v not in CORPUS_VARIANTS]
    extra = random.Random(f"{SEED}-held-out").sample(rest, N_EXTRA_HELD_OUT)
    held_out = sorted(CORPUS_VARIANTS + extra)
    return [v for v in names if v not in held_out], held_out


def speakers(part: str) -> list[dict]:
    """The speakers of ``part``: id, espeak voices (``lang+variant``, used in turn), pitch, wpm."""
    train_variants, held_out = split_variants()
    out = []
    if part == "train":
        for k, variant in enumerate(train_variants):
            rng = random.Random(f"{SEED}-train-{variant}")
            for b, (lo, hi) in enumerate(TRAIN["per_variant_pitch_bands"]):
                pitch, wpm = rng.randint(lo, hi - 1), rng.randint(*TRAIN["rate"])
                voices = [f"{lang}+{variant}" for lang in rng.sample(TRAIN_LANGUAGES, TRAIN["languages"])]
                out.append(dict(id=f"t{k:02d}p{b}", voices=voices, pitch=pitch, wpm=wpm))
    else:
        for k, variant in enumerate(held_out + [""]):
            rng = random.Random(f"{SEED}-eval-{variant or 'default'}")
            lang = rng.choice(EVAL_LANGUAGES)
            voice = f"{lang}+{variant}" if variant else lang
            out.append(
                dict(
                    id=f"e{k:02d}",
                    voices=[voice],
                    pitch=rng.randint(*EVAL["pitch"]),
                    wpm=rng.randint(*EVAL["rate"]),
                )
            )
    return out


def words(rng: random.Random, n: int) -> list[str]:
    """``n`` pseudo-words: 1-3 consonant-vowel(-consonant) syllables, one in 8 a number."""
    out = []
    for _ in range(n):
        if rng.random() < 0.125:
            out.append(str(rng.randint(2, 999)))
            continue
        syl = [rng.choice(CONSONANTS) + rng.choice(VOWELS) + (rng.choice("nlrs") if rng.random() < 0.3 else "")]
        out.append("".join(syl + [rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(rng.randint(0, 2))]))
    return out


def synthesise(spk: dict, voice: str, text: str, out_path: Path, tmp: Path) -> float:
    """espeak-ng -> sox (16 kHz mono 16-bit, silence trimmed, 0.1 s padding); the clip's seconds."""
    raw = tmp / (out_path.stem + ".raw.wav")
    subprocess.run(
        [
            "espeak-ng",
            "-b",
            "1",
            "-v",
            voice,
            "-p",
            str(spk["pitch"]),
            "-s",
            str(spk["wpm"]),
            "-w",
            str(raw),
            text,
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "sox",
            "-D",
            "-R",
            "-V1",
            str(raw),
            "-r",
            "16000",
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            str(out_path),
        ]
        + ["rate", "-v", "16000", "silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%"]
        + ["reverse", "pad", "0.1", "0.1"],
        check=True,
        capture_output=True,
    )
    raw.unlink()
    n = int(subprocess.run(["soxi", "-s", str(out_path)], check=True, capture_output=True, text=True).stdout)
    return n / 16000


def make_clip(spk: dict, utt: int, out: Path, ext: str, secs: tuple[float, float], tmp: Path) -> tuple[str, str]:
    """One utterance within ``secs`` seconds: fewer/more words until it fits.  -> (key, relative path)."""
    rng = random.Random(f"{SEED}-{spk['id']}-{utt}")
    n_words = rng.randint(2, 7) if secs[1] > 4 else rng.randint(2, 4)
    text = words(rng, 12)
    rel = f"wav/{spk['id']}_u{utt:02d}.{ext}"
    for _ in range(12):
        dur = synthesise(spk, spk["voices"][(utt - 1) % len(spk["voices"])], " ".join(text[:n_words]), out / rel, tmp)
        if dur > secs[1] and n_words > 1:
            n_words -= 1
        elif dur < secs[0] and n_words < len(text):
            n_words += 1
        else:
            break
    if not secs[0] <= dur <= secs[1]:
        sys.exit(f"{rel}: {dur:.2f} s; expected {secs[0]}-{secs[1]} s (speaker {spk})")
    return f"{spk['id']}-u{utt:02d}", rel


def write_trials(keys: list[str], out: Path) -> tuple[int, int]:
    """All pairs (enroll < test) as VoxCeleb trials; -> (targets, non-targets)."""
    lines = [f"{int(a.split('-')[0] == b.split('-')[0])} {a} {b}" for a, b in itertools.combinations(sorted(keys), 2)]
    (out / "trials.txt").write_text("\n".join(lines) + "\n")
    n_target = sum(line.startswith("1 ") for line in lines)
    return n_target, len(lines) - n_target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", choices=["train", "eval"])
    ap.add_argument("out", type=Path, help="output folder (replaced)")
    ap.add_argument(
        "--jobs", type=int, default=2, help="parallel espeak-ng/sox pipelines (output does not depend on it)"
    )
    args = ap.parse_args()
    for tool in ("espeak-ng", "sox", "soxi"):
        if shutil.which(tool) is None:
            sys.exit(f"missing {tool}: apt-get install -y espeak-ng sox")
    spks = speakers(args.part)
    cfg = TRAIN if args.part == "train" else EVAL
    ext = "wav" if args.part == "train" else "flac"
    shutil.rmtree(args.out, ignore_errors=True)
    (args.out / "wav").mkdir(parents=True)
    jobs = [(s, u) for s in spks for u in range(1, cfg["utts"] + 1)]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        clips = list(pool.map(lambda j: make_clip(j[0], j[1], args.out, ext, cfg["secs"], Path(tmp)), jobs))
    clips.sort()
    (args.out / "wav.scp").write_text("".join(f"{k} {p}\n" for k, p in clips))
    (args.out / "utt2spk").write_text("".join(f"{k} {k.split('-')[0]}\n" for k, _ in clips))
    rows = ["speaker\tvoice\tpitch\twpm"] + [
        f"{s['id']}\t{','.join(s['voices'])}\t{s['pitch']}\t{s['wpm']}" for s in spks
    ]
    (args.out / "speakers.tsv").write_text("\n".join(rows) + "\n")
    summary = f"{len(spks)} speakers, {len(clips)} clips"
    if args.part == "eval":  # the training speakers too, so tests can check that the two are disjoint
        rows = ["speaker\tvoice\tpitch\twpm"] + [
            f"{s['id']}\t{','.join(s['voices'])}\t{s['pitch']}\t{s['wpm']}" for s in speakers("train")
        ]
        (args.out / "train_speakers.tsv").write_text("\n".join(rows) + "\n")
        n_t, n_n = write_trials([k for k, _ in clips], args.out)
        summary += f", {n_t + n_n} trials ({n_t} target, {n_n} non-target)"
    print(f"{summary} -> {args.out}")


if __name__ == "__main__":
    main()
