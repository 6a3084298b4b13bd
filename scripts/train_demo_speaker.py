#!/usr/bin/env python3
"""Train the built-in trained demo speaker model (w2vlab/model/data/demo_trained/) on CPU.

    python scripts/make_voice_corpus.py train /tmp/voices_train
    python scripts/train_demo_speaker.py /tmp/voices_train --out w2vlab/model/data/demo_trained

The defaults are the packaged model's recipe (its README.md gives the command and corpus).
One thread by default: on a 2-core machine shared with other jobs a 2-thread step measured
~10x slower than a 1-thread one.

The model is the real architecture, built by the same code as every checkpoint: a stock
``Wav2Vec2BertModel`` (:func:`w2vlab.model._encoder.build_encoder`) + MFA adapters + attentive
statistics pooling + bottleneck (:class:`~w2vlab.model._encoder.SpeakerEncoder`), small.  Loss:
additive angular margin softmax (AAM; margin ramped 0 -> ``--margin`` over the first third of
the steps, scale ``--scale``); the class weights are training-only and not saved.

Features come from HF's ``SeamlessM4TFeatureExtractor`` (w2v-bert-2.0's preprocessor config),
computed once per clip and cached (float16) under ``--cache``; a batch is random crops of
``--crop`` rows (10 ms x 2 each; shorter clips are padded and masked).  Adam, linear warm-up then
cosine decay.  ``--warps``: each clip's mel axis is stretched by a factor drawn from the
list and (speaker, factor) is its class, so the model sees more timbres than espeak-ng's
variants (vocal-tract-length perturbation).  Seeded: torch, and a numpy Generator for batches.  The evaluation set
(tests/data/voices_eval) is only logged during training, never used to pick a step: the
weights written are those of the last step.

Writes an ordinary w2vlab checkpoint folder (:func:`w2vlab.model._demo.save_checkpoint`) and
``training.json`` (recipe, wall time, threads, sha256 of the weight files).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from w2vlab._audio import read_audio
from w2vlab._features import extractor_valid_rows
from w2vlab.corpus._trials import eer, read_trials
from w2vlab.model._config import W2VBERT_PREPROCESSOR, HeadConfig, normalise_pruning
from w2vlab.model._demo import _COMMON, save_checkpoint
from w2vlab.model._encoder import SpeakerEncoder, build_encoder, count_parameters

EVAL_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "voices_eval"


def read_scp(folder: Path) -> list[tuple[str, Path, str]]:
    """(key, absolute path, speaker) of every line of ``folder/wav.scp`` (utt2spk beside it)."""
    spk = dict(line.split() for line in (folder / "utt2spk").read_text().splitlines())
    rows = [line.split(maxsplit=1) for line in (folder / "wav.scp").read_text().splitlines()]
    return [(k, folder / p, spk[k]) for k, p in rows]


def features(fe, paths: list[Path]) -> list[torch.Tensor]:
    """HF features, valid rows only: one float32 [T, 160] per clip."""
    out = []
    for path in paths:
        wave, sr = read_audio(path)
        assert sr == 16000 and wave.ndim == 1, (path, sr, wave.shape)
        out.append(extractor_valid_rows(fe, wave)[0])
    return out


def cached_features(fe, corpus: Path, cache: Path) -> tuple[list[torch.Tensor], np.ndarray, list[str]]:
    """Features of the corpus (cached by the sha256 of its lists and audio), speaker labels, speaker names."""
    rows = read_scp(corpus)
    digest = hashlib.sha256((corpus / "wav.scp").read_bytes() + (corpus / "utt2spk").read_bytes())
    for _, p, _ in rows:  # the audio itself: two corpora can share their keys and paths
        digest.update(p.read_bytes())
    tag = digest.hexdigest()[:16]
    path = cache / f"features_{tag}.pt"
    if path.is_file():
        feats = torch.load(path, weights_only=True)
    else:
        t0 = time.time()
        feats = [f.to(torch.float16) for f in features(fe, [p for _, p, _ in rows])]
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(feats, path)
        print(f"features of {len(feats)} clips in {time.time() - t0:.0f} s -> {path}", flush=True)
    names = sorted({s for _, _, s in rows})
    index = {s: i for i, s in enumerate(names)}
    return feats, np.array([index[s] for _, _, s in rows]), names


def corpora_features(fe, corpora: list[Path], cache: Path) -> tuple[list[torch.Tensor], np.ndarray, list[str]]:
    """:func:`cached_features` of several corpora, concatenated; with more than one, every speaker is a
    class of its own, named ``{corpus index}:{speaker}`` (two runs of the corpus script give
    different pitches and speeds to the same speaker name)."""
    if len(corpora) == 1:
        return cached_features(fe, corpora[0], cache)
    feats, labels, names = [], [], []
    for i, corpus in enumerate(corpora):
        f, lab, n = cached_features(fe, corpus, cache)
        feats += f
        labels.append(lab + len(names))
        names += [f"{i}:{s}" for s in n]
    return feats, np.concatenate(labels), names


def batch(feats: list[torch.Tensor], picks: np.ndarray, starts: np.ndarray, crop: int):
    """Random crops of ``crop`` rows -> features [B, crop, 160] (padded with 1.0) and mask [B, crop]."""
    x = torch.ones(len(picks), crop, feats[0].shape[1])
    mask = torch.zeros(len(picks), crop, dtype=torch.long)
    for b, (i, s) in enumerate(zip(picks, starts)):
        f = feats[i][s : s + crop].float()
        x[b, : len(f)], mask[b, : len(f)] = f, 1
    return x, mask


def warp_mel(x: torch.Tensor, alphas: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """Stretch each clip's mel axis by its factor (bin k takes bin k / alpha): a vocal-tract-length
    change, as speed perturbation makes.  x [B, T, stride * n_mels] -> the same shape."""
    b, t, d = x.shape
    src = (torch.arange(n_mels, dtype=x.dtype)[None, :] / alphas[:, None]).clamp(0, n_mels - 1)  # (B, M)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=n_mels - 1)
    frac = (src - lo)[:, None, None, :]  # (B, 1, 1, M)
    m = x.view(b, t, d // n_mels, n_mels)
    index = lambda i: i[:, None, None, :].expand(b, t, d // n_mels, n_mels)  # noqa: E731
    out = m.gather(3, index(lo)) * (1 - frac) + m.gather(3, index(hi)) * frac
    return out.reshape(b, t, d)


class AAMSoftmax(torch.nn.Module):
    """Additive angular margin softmax: s * cos(theta_y + m) for the true class, s * cos(theta) else."""

    def __init__(self, dim: int, n_classes: int, scale: float):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n_classes, dim) * 0.01)
        self.scale = scale

    def forward(self, emb: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
        cos = F.linear(F.normalize(emb), F.normalize(self.weight)).clamp(-1 + 1e-7, 1 - 1e-7)  # (B, C)
        theta = torch.acos(cos)
        target = torch.cos(theta + margin)
        # past pi - m, cos(theta + m) is not monotonic: fall back to cos(theta) - m sin(m) * m (CosFace-like)
        target = torch.where(theta + margin < math.pi, target, cos - math.sin(math.pi - margin) * margin)
        onehot = F.one_hot(labels, cos.shape[1]).bool()
        return F.cross_entropy(self.scale * torch.where(onehot, target, cos), labels)


@torch.no_grad()
def evaluate(model: SpeakerEncoder, eval_feats: list[torch.Tensor], keys: list[str], trials) -> dict:
    """EER and mean target / non-target cosine on the evaluation trials (each clip alone, no mask)."""
    model.eval()
    emb = torch.cat([model(f.float()[None]) for f in eval_feats])
    emb = F.normalize(emb).numpy()
    index = {k: i for i, k in enumerate(keys)}
    e = emb[[index[k] for k in trials.enroll]]
    t = emb[[index[k] for k in trials.test]]
    scores = (e * t).sum(1)
    labels = np.asarray(trials.labels, dtype=bool)
    model.train()
    return dict(
        eer=eer(scores, labels)[0],
        target=float(scores[labels].mean()),
        nontarget=float(scores[~labels].mean()),
    )


def make_model(args) -> tuple[SpeakerEncoder, dict]:
    enc = dict(
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=args.ffn,
    )
    cfg, _ = normalise_pruning({**_COMMON, **enc})
    torch.manual_seed(args.seed)
    head = HeadConfig(adapter_dim=args.adapter, attention_channels=args.adapter, embedding_dim=args.embedding)
    return SpeakerEncoder(build_encoder(cfg), head), cfg


def train(args) -> None:
    torch.set_num_threads(args.threads)
    from transformers import SeamlessM4TFeatureExtractor

    fe = SeamlessM4TFeatureExtractor(**W2VBERT_PREPROCESSOR)
    feats, labels, names = corpora_features(fe, args.corpus, args.cache)
    eval_rows = read_scp(args.eval)
    eval_feats = features(fe, [p for _, p, _ in eval_rows])
    trials = read_trials(args.eval / "trials.txt")
    model, cfg = make_model(args)
    if args.init:  # continue from a checkpoint of the same size (the AAM class weights start afresh)
        from w2vlab.model._checkpoint import load_speaker_encoder

        model.load_state_dict(load_speaker_encoder(args.init).model.state_dict())
    warps = torch.tensor([float(w) for w in args.warps.split(",")])
    loss_head = AAMSoftmax(args.embedding, len(names) * len(warps), args.scale)
    params = list(model.parameters()) + list(loss_head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    warm = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps)))
    )
    rng = np.random.default_rng(args.seed)
    lengths = np.array([len(f) for f in feats])
    print(
        f"{len(names)} speakers, {len(feats)} clips ({lengths.sum() / 50 / 3600:.2f} h), "
        f"{count_parameters(model)} parameters, {args.threads} threads",
        flush=True,
    )
    model.train()
    t0, log = time.time(), []
    for step in range(args.steps):
        picks = rng.integers(0, len(feats), args.batch)
        starts = (rng.random(args.batch) * np.maximum(lengths[picks] - args.crop, 0)).astype(int)
        x, mask = batch(feats, picks, starts, args.crop)
        w = torch.from_numpy(rng.integers(0, len(warps), args.batch))
        if len(warps) > 1:  # each (speaker, warp) is a class of its own: more voices than espeak-ng has
            x = warp_mel(x, warps[w])
        margin = args.margin * min(1.0, step / max(1, args.steps // 3))
        loss = loss_head(model(x, mask), torch.from_numpy(labels[picks]) * len(warps) + w, margin)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        sched.step()
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            m = evaluate(model, eval_feats, [k for k, _, _ in eval_rows], trials)
            log.append(dict(step=step + 1, loss=round(loss.item(), 4), seconds=round(time.time() - t0, 1), **m))
            print(json.dumps(log[-1]), flush=True)
    wall = time.time() - t0
    model.eval()
    save_checkpoint(model, cfg, args.out, overwrite=True)
    files = {
        n: hashlib.sha256((args.out / n).read_bytes()).hexdigest() for n in sorted(p.name for p in args.out.iterdir())
    }
    record = dict(
        recipe={k: json.loads(json.dumps(v, default=str)) for k, v in vars(args).items()},  # paths as text
        speakers=len(names),
        clips=len(feats),
        hours=round(float(lengths.sum()) / 50 / 3600, 3),
        parameters=count_parameters(model),
        wall_seconds=round(wall, 1),
        threads=args.threads,
        cpu=platform.processor() or platform.machine(),
        torch=torch.__version__,
        log=log,
        sha256=files,
    )
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"trained in {wall:.0f} s -> {args.out}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "corpus", type=Path, nargs="+", help="training corpus folder(s) (wav.scp, utt2spk) from make_voice_corpus.py"
    )
    ap.add_argument("--out", type=Path, required=True, help="checkpoint folder to write (replaced)")
    ap.add_argument("--eval", type=Path, default=EVAL_DIR, help="evaluation folder (wav.scp, utt2spk, trials.txt)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/w2vlab_demo_features"))
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=128)
    ap.add_argument("--adapter", type=int, default=32)
    ap.add_argument("--embedding", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--crop", type=int, default=64, help="rows per crop (one row = 20 ms)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--margin", type=float, default=0.2)
    ap.add_argument("--scale", type=float, default=30.0)
    ap.add_argument(
        "--warps",
        default="1.0",
        help="mel-axis stretch factors; each makes a new class of every speaker (e.g. 0.9,1,1.1)",
    )
    ap.add_argument("--init", type=Path, help="start from this checkpoint folder (same size) instead of random weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=250)
    train(ap.parse_args())


if __name__ == "__main__":
    main()
