"""What every metric shares: :class:`BenchContext` (settings, paths, the models loaded on first use) and
the format table measured once per run (:func:`time_formats`).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2vlab._allocator import trim
from w2vlab._benchrow import COSINE, RATIO_VS_EAGER, FormatRow, MetricRow
from w2vlab._contract import EVAL_FILES
from w2vlab._features import extractor_valid_rows
from w2vlab.bench._procs import child_env
from w2vlab.bench._synth import SR, corpus_lengths, write_corpus
from w2vlab.bench._timing import paired_seconds

logger = logging.getLogger(__name__)


Rows = dict[str, MetricRow]  # what a metric function returns: metric name -> row
CUSTOM = "custom"  # the size a run of --model-path reports: not one of the demo's sizes


@dataclass
class BenchContext:
    """What every metric shares: settings, paths, and (loaded on first use, after the export)
    the eager model, the HF extractor, the TorchScript artifact and the 10 s clip."""

    size: str
    quick: bool
    threads: int
    work: Path
    trials: Path | None = None  # trials.txt and wav.scp of the reduced-precision metric's flipped decisions
    model_path: Path | None = None  # --model-path: this checkpoint folder instead of the random demo of ``size``

    @property
    def repeats(self) -> int:
        return 3 if self.quick else 7

    @property
    def ckpt(self) -> Path:
        """The checkpoint measured: ``model_path``, else the demo written into ``work``."""
        return self.work / f"demo_{self.size}" if self.model_path is None else self.model_path

    @property
    def art(self) -> Path:
        return self.work / f"artifact_{self.size}"

    @cached_property
    def env(self) -> dict[str, str]:
        return child_env(self.threads)

    @cached_property
    def loaded(self) -> Any:
        from w2vlab.model._checkpoint import load_speaker_encoder

        return load_speaker_encoder(self.ckpt)

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    @cached_property
    def fe(self) -> Any:
        from w2vlab.model._checkpoint import feature_extractor_for

        return feature_extractor_for(self.loaded)

    @cached_property
    def config(self) -> Any:
        from w2vlab._features import FeatureConfig

        return FeatureConfig.from_extractor(self.fe)

    @cached_property
    def artifact_formats(self) -> list[str]:
        """The formats the artifact has for preprocessed mode, in contract order."""
        from w2vlab._contract import FORMATS, format_entries, read_metadata

        present = format_entries(read_metadata(self.art), "preprocessed")
        return [fmt for fmt in FORMATS if fmt in present]

    def file(self, fmt: str, mode: str = "preprocessed") -> Path:
        from w2vlab._contract import FILES

        return self.art / FILES[fmt, mode]

    def load(self, fmt: str, mode: str = "preprocessed") -> Callable[..., torch.Tensor]:
        from w2vlab.runtime._loaders import load_format

        return load_format(self.file(fmt, mode), fmt, mode, self.config, threads=self.threads)

    @cached_property
    def pre(self) -> Callable[..., torch.Tensor]:
        """The preprocessed-mode TorchScript artifact."""
        return self.load("torchscript")

    def release_models(self) -> None:
        """Drop the eager model and the TorchScript artifact this process holds (reloaded on next use)
        and hand their memory back: before a metric whose children hold several full-size models."""
        for name in ("loaded", "pre"):
            self.__dict__.pop(name, None)
        trim()

    @cached_property
    def clip10(self) -> np.ndarray:
        from w2vlab.export._suite import synthetic_speech

        return synthetic_speech(10 * SR, seed=3)

    @cached_property
    def feats(self) -> torch.Tensor:
        """The 10 s clip's HF features, valid rows: [1, T, 160]."""
        return extractor_valid_rows(self.fe, self.clip10)

    @cached_property
    def formats(self) -> dict[str, FormatRow]:
        """Every format's row on the 10 s clip (:func:`time_formats`), measured once on first use."""
        return time_formats(self)

    @property
    def corpus_files(self) -> int:
        """Clips in the synthetic corpus of the corpus metrics (10x that many short ones for the RSS one)."""
        return 24 if self.quick else 48

    @cached_property
    def corpus(self) -> Path:
        """wav.scp of the corpus metrics' clips: :attr:`corpus_files` WAV files of 1-12 s."""
        return write_corpus(self.work / "corpus", corpus_lengths(self.corpus_files, 1.0, 12.0))

    @cached_property
    def corpus_seconds(self) -> float:
        """Audio seconds in :attr:`corpus` (what every corpus run embeds)."""
        from w2vlab.corpus._embed import clip_seconds, read_source

        return sum(clip_seconds(item) for item in read_source(self.corpus))

    @cached_property
    def embedder(self) -> Any:
        """The artifact's preprocessed TorchScript file as a corpus embedder."""
        from w2vlab.corpus._embed import ArtifactEmbedder

        return ArtifactEmbedder(self.art, "preprocessed", "torchscript")


def make_context(
    size: str | None,
    quick: bool,
    threads: int,
    work: Path,
    reuse: bool = False,
    trials: Path | None = None,
    model_path: Path | None = None,
) -> BenchContext:
    """The context, with the demo checkpoint of ``size`` (None: tiny) written into ``work``, or with
    ``model_path`` (a checkpoint folder :func:`~w2vlab.model._checkpoint.load_speaker_encoder` reads, measured
    as it is; ``size`` then None or ``"custom"``); with ``reuse``, the checkpoint and artifact an earlier run
    left in ``work`` (``ValueError`` if either is missing, or the artifact is not ``model_path``'s).
    ``trials``: a directory with ``trials.txt`` and ``wav.scp`` (``ValueError`` if either is missing)."""
    from w2vlab.model._demo import write_demo_checkpoint

    model_path = None if model_path is None else Path(model_path)
    trials = None if trials is None else Path(trials)
    ctx = BenchContext(resolve_size(size, model_path), quick, threads, Path(work), trials, model_path)
    check_trials(ctx.trials)
    check_model_path(ctx.model_path)
    if reuse:
        check_reusable(ctx)
        return ctx
    if model_path is None:
        write_demo_checkpoint(ctx.ckpt, size=ctx.size, overwrite=True)
    return ctx


def resolve_size(size: str | None, model_path: Path | None) -> str:
    """What the run reports as its size: ``size`` (None: ``"tiny"``) for the demo, :data:`CUSTOM` with a
    ``model_path``; ``InputError`` where both are given (a demo size means a random-weight demo of it)."""
    from w2vlab._contract import InputError

    if model_path is None:
        if size == CUSTOM:
            raise InputError(f"size {CUSTOM!r} means a checkpoint of your own; give it with --model-path DIR")
        return "tiny" if size is None else size
    if size not in (None, CUSTOM):
        raise InputError(
            f"--size {size} and --model-path {model_path} both given: --size writes and measures a random-weight "
            f"demo of that size, --model-path measures that checkpoint instead (reported as size {CUSTOM!r}); "
            "expected one of them"
        )
    return CUSTOM


def check_model_path(path: Path | None) -> None:
    """``InputError`` unless ``path`` is None or a directory (a checkpoint folder)."""
    from w2vlab._contract import InputError

    if path is not None and not Path(path).is_dir():
        what = "is not a directory" if Path(path).exists() else "does not exist"
        raise InputError(
            f"--model-path {path} {what}; expected a checkpoint folder that load_speaker_encoder reads "
            "(config.json + model.safetensors + speaker_head.safetensors, e.g. from `w2vlab demo-checkpoint OUT "
            "--trained`, or a WeSpeaker directory)"
        )


def check_reusable(ctx: BenchContext) -> None:
    """``ValueError`` naming what is missing unless an earlier run left its checkpoint and artifact in ``ctx.work``;
    with ``ctx.model_path``, also unless the artifact was exported from the weights there now."""
    from w2vlab._contract import METADATA_FILE

    missing = [str(p) for p in (ctx.ckpt, ctx.art / METADATA_FILE) if not p.exists()]
    if missing:
        run = f"--size {ctx.size}" if ctx.model_path is None else f"--model-path {ctx.model_path}"
        raise ValueError(
            f"reusing {ctx.work} needs the checkpoint and artifact of an earlier {run} run there; "
            f"missing: {', '.join(missing)}"
        )
    if ctx.model_path is not None:
        exported = exported_weights(ctx)
        now = weights_now(ctx.model_path, exported)
        if now != exported:
            raise ValueError(
                f"reusing {ctx.work}: its artifact {ctx.art} was exported from weights with sha256 {exported}, "
                f"but --model-path {ctx.model_path} holds {now}; expected the same checkpoint (run without --reuse "
                "to export this one)"
            )


def exported_weights(ctx: BenchContext) -> dict[str, str]:
    """The artifact's ``source_weights_sha256``: weights file name -> sha256 of what was exported."""
    from w2vlab._contract import read_metadata

    return dict(read_metadata(ctx.art).get("source_weights_sha256") or {})


def weights_now(folder: Path, names: dict[str, str]) -> dict[str, str | None]:
    """sha256 of each file named in ``names`` as ``folder`` holds it now (in it, else the first below it, as a
    WeSpeaker directory's ``models/``; None if absent)."""
    from w2vlab.model._checkpoint import sha256_file

    def find(name: str) -> Path | None:
        direct = Path(folder) / name
        return direct if direct.is_file() else next(iter(sorted(Path(folder).rglob(name))), None)

    found = {name: find(name) for name in names}
    return {name: None if path is None else sha256_file(path) for name, path in found.items()}


def check_trials(directory: Path | None) -> None:
    """``ValueError`` naming what is missing unless ``directory`` is None or holds :data:`EVAL_FILES`."""
    if directory is None:
        return
    missing = [name for name in EVAL_FILES if not (Path(directory) / name).is_file()]
    if missing:
        raise ValueError(
            f"--trials {directory}: expected a directory with {' and '.join(EVAL_FILES)} (the trials and their "
            f"audio, e.g. tests/data/corpus in a checkout); missing: {', '.join(missing)}"
        )


def file_bytes(path: Path) -> int:
    """Size of ``path`` plus its ONNX external data file, if any."""
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def time_format(ctx: BenchContext, fmt: str, runner: Callable[..., torch.Tensor]) -> FormatRow:
    """``runner``'s latency on the 10 s clip alternated with eager's, its parity with eager, its size."""
    from w2vlab._parity import compare

    with torch.inference_mode():
        t_eager, t = paired_seconds(lambda: ctx.model(ctx.feats), lambda: runner(ctx.feats), ctx.repeats)
        parity = compare(ctx.model(ctx.feats), runner(ctx.feats))
    return {
        "s": t,
        "eager_s": t_eager,
        RATIO_VS_EAGER: t / t_eager,
        COSINE: parity.worst_cosine,
        "max_abs_diff": parity.worst_max_abs_diff,
        "max_rel_diff": parity.worst_max_rel_diff,  # max|diff| / max|ref|: what the parity bounds hold
        "bytes": file_bytes(ctx.file(fmt)),
    }


def time_formats(ctx: BenchContext) -> dict[str, FormatRow]:
    """:func:`time_format` for every preprocessed-mode file of the artifact, one loaded at a time."""
    rows = {}
    for fmt in ctx.artifact_formats:
        gc.collect()
        runner = ctx.pre if fmt == "torchscript" else ctx.load(fmt)
        rows[fmt] = time_format(ctx, fmt, runner)
        del runner
    if "onnx" not in rows:
        logger.warning("the [onnx] extra is not installed: no ONNX rows")
    return rows
