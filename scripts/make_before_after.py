#!/usr/bin/env python3
"""Render issue #27's before/after figures into ``docs/images/before_after/``.

    python scripts/make_before_after.py            # needs the git history (it reads the old figure code)

*Before* is the figure code as of commit ``OLD`` (read with ``git show``, the last commit before the
figure rework) drawing what the notebooks drew then: the random-weight tiny demo.  *After* is today's
``w2vlab.lab`` drawing what the notebooks draw now.

- parity: the **same** report both sides (notebook 02's waveform export of the tiny demo on the quick suite
  plus every committed fixture), so only the figure differs;
- similarity: before, the tiny demo on the committed fixtures in file order (old notebook 04); after, the
  trained demo on 8 evaluation speakers x 3 clips, sorted by speaker (notebook 04 now);
- trials: onnx-int8 against eager; before, the tiny demo on ``tests/data/corpus`` (old notebook 07); after, the
  trained demo on ``tests/data/voices_eval`` (notebook 07 now).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")

from w2vlab import lab, load_artifact  # noqa: E402
from w2vlab.corpus import (  # noqa: E402
    ArtifactEmbedder,
    compare_trials,
    embed_corpus,
    load_embeddings,
    read_trials,
    score_trials,
)
from w2vlab.export import QUICK_LENGTHS, audio_files, build_suite, export  # noqa: E402
from w2vlab.model import EagerEmbedder, write_demo_checkpoint, write_trained_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OLD = "4242008"  # the last commit before the figure rework (issue #27, section 4)
OUT = ROOT / "docs" / "images" / "before_after"
DATA = ROOT / "tests" / "data"
EVAL = DATA / "voices_eval"


def old_plots(tmp: Path):
    """The figure module as of ``OLD``, imported under another name beside today's."""
    path = tmp / "old_plots.py"
    path.write_text(
        subprocess.run(
            ["git", "show", f"{OLD}:w2vlab/lab/_plots.py"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
    )
    spec = importlib.util.spec_from_file_location("old_plots", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save(fig, name: str) -> None:
    fig.savefig(OUT / name, dpi=80, bbox_inches="tight")
    print(f"wrote {OUT / name}")


def trial_comparison(ckpt: Path, corpus: Path, trials: Path, work: Path):
    """onnx-int8 against eager on ``corpus``'s trials: [eager, onnx-int8] embedded, scored, compared."""
    export(ckpt, work / "artifact", formats=("onnx-int8",), cases=build_suite(QUICK_LENGTHS[:4]), progress=False)
    runs = {"eager": EagerEmbedder(ckpt), "onnx-int8": ArtifactEmbedder(work / "artifact", "preprocessed", "onnx-int8")}
    for name, embedder in runs.items():
        embed_corpus(corpus, work / name, embedder, progress=False)
    scores = {name: score_trials(load_embeddings(work / name), read_trials(trials)) for name in runs}
    return compare_trials(scores["eager"], scores["onnx-int8"], label="onnx-int8 vs eager")


def eval_subset(n_speakers: int = 8, per_speaker: int = 3) -> tuple[list[Path], list[str], list[str]]:
    """The first ``per_speaker`` clips of the first ``n_speakers`` evaluation speakers: paths, keys, speakers."""
    spk = dict(line.split() for line in (EVAL / "utt2spk").read_text().splitlines())
    rows = [line.split(maxsplit=1) for line in (EVAL / "wav.scp").read_text().splitlines()]
    chosen = set(sorted(set(spk.values()))[:n_speakers])
    count: Counter[str] = Counter()
    picked = []
    for k, p in rows:
        if spk[k] in chosen and count[spk[k]] < per_speaker:
            count[spk[k]] += 1
            picked.append((k, p))
    return [EVAL / p for _, p in picked], [k for k, _ in picked], [spk[k] for k, _ in picked]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        old = old_plots(tmp)
        tiny = write_demo_checkpoint(tmp / "tiny")
        trained = write_trained_checkpoint(tmp / "trained")

        cases = build_suite(QUICK_LENGTHS, audio=audio_files(DATA))
        result = export(tiny, tmp / "parity", modes=("preprocessed", "waveform"), cases=cases, progress=False)
        save(old.plot_parity(result.reports["waveform"]), "parity_before.png")
        save(lab.plot_parity(result.reports["waveform"]), "parity_after.png")

        files = audio_files(DATA)
        art = load_artifact(tmp / "parity")
        emb = [art.embed_file(f) for f in files]
        save(
            old.plot_similarity_matrix(torch.stack(emb), [f.stem for f in files], title="cosine similarity"),
            "similarity_before.png",
        )
        export(trained, tmp / "trained_art", cases=build_suite(QUICK_LENGTHS[:4]), progress=False)
        paths, keys, speakers = eval_subset()
        art = load_artifact(tmp / "trained_art")
        emb = torch.stack([art.embed_file(p) for p in paths])
        save(
            lab.plot_similarity_matrix(emb, keys, speakers=speakers, title="cosine similarity, trained demo"),
            "similarity_after.png",
        )

        before = trial_comparison(tiny, DATA / "corpus" / "wav.scp", DATA / "corpus" / "trials.txt", tmp / "t0")
        save(old.plot_trial_parity(before, title="onnx-int8 vs eager, random demo"), "trials_before.png")
        after = trial_comparison(trained, EVAL / "wav.scp", EVAL / "trials.txt", tmp / "t1")
        save(lab.plot_trial_parity(after, title="onnx-int8 vs eager, trained demo"), "trials_after.png")


if __name__ == "__main__":
    sys.exit(main())
