"""Embed a whole corpus: a directory, a Kaldi ``wav.scp`` or a NeMo JSONL manifest in, Kaldi ark/scp out.

>>> embed_corpus("data/wav.scp", "out/xvec", ArtifactEmbedder("artifacts/w2vbert_speaker"))

The run is five pieces, each usable alone (a second engine, e.g. Ray Data, reuses them):

1. :func:`read_source` lists the clips (:class:`CorpusItem`) and refuses duplicate keys before
   any work;
2. :func:`clip_seconds` reads each clip's length from its header (``soundfile.info``) and
   :func:`plan_batches` sorts by length and packs batches up to a budget of *padded* audio;
3. :class:`BatchPreparer` (picklable; it holds the embedder's ``prepare``, not the model) reads,
   resamples and validates each clip of a batch on its own, then computes the model inputs of
   the good ones; a bad file becomes a failure, never a failed batch;
4. the embedder's ``embed`` runs the model, in the main process;
5. :class:`CorpusWriter` appends embeddings to ``embeddings.ark`` + ``embeddings.scp`` with
   kaldiio and failures to ``failures.tsv``, and commits each batch in ``progress.json``.

The local engine (:func:`run_local`) runs step 3 in a ``torch.utils.data.DataLoader`` whose
items are whole batches (``batch_size=None``), with ``workers`` processes.

Resume.  After each batch the ark and scp are appended, flushed and fsynced, then
``progress.json`` (their committed byte sizes and the embedder's identity) is replaced
atomically: that replace is the commit.  A re-run truncates both files to the committed sizes
(dropping a batch written but not committed) and skips the keys in the scp, so an interruption
loses at most the batch in flight and no key is ever written twice.  Appending the scp rather
than rewriting it keeps each commit O(batch), not O(corpus).

Keys of a directory source are the file's path relative to the directory, without its
extension, with ``/`` replaced by ``-`` and whitespace by ``_`` (``spk1/utt 2.wav`` ->
``spk1-utt_2``).  The scp names the ark by its absolute path (``kaldiio.load_scp`` and Kaldi
read it from any working directory).

This module is consumer-side: it imports no exporter, no eager model and no transformers
modelling code.  The eager (``--model-path``) embedder lives in :mod:`w2vlab.model._eager`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import kaldiio
import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from w2vlab._atomic import write_json
from w2vlab._audio import prepare_clip, read_audio
from w2vlab._contract import CORPUS_ARK, CORPUS_SCP, InputError, file_entry
from w2vlab._version import __version__
from w2vlab.runtime._artifact import load_artifact
from w2vlab.runtime._prepare import Preparer

logger = logging.getLogger(__name__)

__all__ = [
    "ArtifactEmbedder",
    "BatchPreparer",
    "CorpusItem",
    "CorpusSummary",
    "CorpusWriter",
    "Embedder",
    "PreparedBatch",
    "embed_corpus",
    "plan_batches",
    "read_source",
    "run_local",
]

TAG = "w2vlab-embed-corpus/1"  # format tag of progress.json
ARK, SCP = CORPUS_ARK, CORPUS_SCP
FAILURES, SUMMARY, PROGRESS = "failures.tsv", "summary.json", "progress.json"
OUTPUT_FILES = (ARK, SCP, FAILURES, SUMMARY, PROGRESS)
# Padded audio per batch, in seconds (longest clip x clips).  Batching gains up to ~32-64 s and
# flattens; past that a small corpus pays in padding.  60 s is the top of that plateau
# (docs/benchmark.md, "Why the code is as it is": the sweep) and gives a GPU batches of 10-60
# speech clips (not measured on a GPU).
DEFAULT_BATCH_SECONDS = 60.0
_SKIP_FORMATS = {"RAW", "WAVEX", "MAT4", "MAT5"}  # headerless, stored as .wav, or MATLAB data
_SUFFIX_ALIASES = (".aif", ".sph", ".oga", ".opus", ".snd")  # common names of AIFF, NIST, OGG, AU files
Failure = tuple[str, str, str]  # (key, path, reason)


# --------------------------------------------------------------------------- the embedder


class Embedder(Protocol):
    """What :func:`embed_corpus` needs of a model.

    ``prepare`` must be picklable on its own (a :class:`w2vlab.runtime._prepare.Preparer`, not a bound method of an
    object holding the model): with ``workers > 0`` it runs in worker processes.
    """

    identity: dict[str, Any]  # what produces the embeddings; a resume must match it exactly
    sample_rate: int  # Hz the model takes
    min_num_samples: int  # shortest clip, in samples at sample_rate
    mode: str  # "preprocessed" or "waveform": what prepare() returns
    prepare: Callable[[Sequence[np.ndarray]], tuple[torch.Tensor, ...]]  # 16 kHz mono clips -> model inputs
    recipe: Callable[[], Embedder]  # picklable: builds the same embedder in another process (Ray actors)

    def embed(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Model inputs of B clips -> embeddings [B, D] on the CPU."""


class ArtifactEmbedder:
    """An exported artifact (:func:`w2vlab.runtime._artifact.load_artifact`) as an :class:`Embedder`."""

    def __init__(
        self,
        directory: str | Path,
        mode: str | None = None,
        format: str = "torchscript",
        device: str | torch.device = "cpu",
    ):
        self.artifact = load_artifact(directory, mode, format, device)
        art = self.artifact
        self.mode, self.sample_rate = art.mode, art.sample_rate
        self.min_num_samples = int(art.metadata["min_num_samples"])
        self.identity = {
            "kind": "artifact",
            "artifact": str(Path(directory).resolve()),
            "format": art.format,
            "mode": art.mode,
            "content_sha256": file_entry(art.metadata, art.mode, art.format)["content_sha256"],
        }
        config = art.feature_extractor.to_dict() if art.mode == "preprocessed" else None
        self.prepare = Preparer(art.mode, config, art.pooling)
        self.recipe = functools.partial(ArtifactEmbedder, self.identity["artifact"], art.mode, art.format)

    def embed(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        with torch.inference_mode():
            return self.artifact.forward(*(x.to(self.artifact.device) for x in inputs)).cpu()

    def __repr__(self) -> str:
        return f"ArtifactEmbedder({self.artifact!r})"


# --------------------------------------------------------------------------- the source


@dataclass(frozen=True)
class CorpusItem:
    """One clip to embed."""

    key: str  # utterance id: unique, no whitespace
    path: Path
    offset: float = 0.0  # seconds into the file where the clip starts
    duration: float | None = None  # seconds; None: to the end of the file
    origin: str = ""  # where the source lists it, for error messages ("wav.scp line 3: 'k a.wav'")


def audio_suffixes() -> frozenset[str]:
    """File name endings a directory source reads: ``soundfile.available_formats()``, lower-cased, plus
    common aliases; not RAW (needs a rate), WAVEX (named .wav) or MATLAB files."""
    names = {f".{name.lower()}" for name in sf.available_formats() if name not in _SKIP_FORMATS}
    return frozenset(names | set(_SUFFIX_ALIASES))


def _directory_items(root: Path) -> list[CorpusItem]:
    suffixes = audio_suffixes()
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    if not files:
        raise InputError(f"{root} holds no audio files (looked for {', '.join(sorted(suffixes))}, recursively)")
    items = []
    for path in files:
        rel = path.relative_to(root).with_suffix("").as_posix()
        items.append(CorpusItem("_".join(rel.replace("/", "-").split()), path, origin=f"file {path.relative_to(root)}"))
    return items


def _lines(path: Path) -> Iterable[tuple[int, str, str]]:
    """(line number, origin text, stripped line) of each non-blank line."""
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            text = line.strip()
            if text:
                yield number, f"{path.name} line {number}: {text[:200]!r}", text


def _wav_scp_items(scp: Path) -> list[CorpusItem]:
    items = []
    for _, origin, text in _lines(scp):
        parts = text.split(maxsplit=1)
        if len(parts) != 2:
            raise InputError(f"{origin}: expected '<key> <path>'")
        key, where = parts
        if where.endswith("|"):
            raise InputError(
                f"{origin}: piped commands ('... |') are not supported; decode the audio to files "
                f"first (e.g. with sox) and list those paths"
            )
        path = Path(where)
        items.append(CorpusItem(key, path if path.is_absolute() else scp.parent / path, origin=origin))
    return items


def _number(entry: Mapping[str, Any], name: str, origin: str, default: float | None) -> float | None:
    value = entry.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise InputError(f"{origin}: {name!r} must be a number of seconds >= 0, received {value!r}")
    return float(value)


def _jsonl_items(manifest: Path) -> list[CorpusItem]:
    items = []
    for _, origin, text in _lines(manifest):
        try:
            entry = json.loads(text)
        except ValueError as e:
            raise InputError(f"{origin}: not a JSON object ({e})") from e
        if not isinstance(entry, dict) or not isinstance(entry.get("audio_filepath"), str):
            raise InputError(f"{origin}: expected a JSON object with an 'audio_filepath' string (NeMo manifest)")
        path = Path(entry["audio_filepath"])
        key = str(entry.get("key") or path.stem)
        if not key or len(key.split()) != 1:
            raise InputError(f"{origin}: key {key!r} is empty or has whitespace; Kaldi keys are one word")
        duration = _number(entry, "duration", origin, None)
        if duration == 0:
            raise InputError(f"{origin}: 'duration' is 0; expected a positive number of seconds (or none: to the end)")
        items.append(
            CorpusItem(
                key,
                path if path.is_absolute() else manifest.parent / path,
                _number(entry, "offset", origin, 0.0),
                duration,
                origin,
            )
        )
    return items


def check_unique(items: Sequence[CorpusItem]) -> None:
    """Raise ``ValueError`` naming both places of every repeated key (the first five)."""
    first: dict[str, CorpusItem] = {}
    clashes = []
    for item in items:
        if item.key in first:
            clashes.append(f"{item.key!r}: {first[item.key].origin} and {item.origin}")
        first.setdefault(item.key, item)
    if clashes:
        more = f" (and {len(clashes) - 5} more)" if len(clashes) > 5 else ""
        raise InputError(f"duplicate keys; every clip needs its own key: {'; '.join(clashes[:5])}{more}")


def read_source(source: str | Path) -> list[CorpusItem]:
    """The clips listed by ``source``, in its order; keys checked unique before anything else happens.

    ``source`` is a directory (every audio file under it, recursively, sorted by path), a JSONL
    manifest (``.jsonl``/``.json``: NeMo's ``audio_filepath``, optional ``key`` (default: the file
    stem), ``offset`` and ``duration`` in seconds) or else a Kaldi ``wav.scp`` (``<key> <path>``
    lines).  Relative paths are resolved against the list's directory.
    """
    source = Path(source)
    if source.is_dir():
        items = _directory_items(source)
    elif not source.is_file():
        raise FileNotFoundError(f"corpus source not found: {source} (expected a directory, wav.scp or .jsonl)")
    elif source.suffix.lower() in (".jsonl", ".json"):
        items = _jsonl_items(source)
    else:
        items = _wav_scp_items(source)
    if not items:
        raise InputError(f"{source} lists no audio")
    check_unique(items)
    return items


# --------------------------------------------------------------------------- planning


def clip_seconds(item: CorpusItem) -> float:
    """The clip's length in seconds, from the file's header.  Raises ``OSError``/``ValueError``."""
    if not item.path.is_file():
        raise FileNotFoundError(f"audio file not found: {item.path}")
    try:
        info = sf.info(str(item.path))
    except RuntimeError as e:  # soundfile's LibsndfileError
        raise InputError(f"cannot read {item.path} as audio with soundfile: {e}") from e
    if info.frames <= 0:
        raise InputError(f"{item.path} contains no audio samples")
    total = info.frames / info.samplerate
    if item.offset >= total:
        raise InputError(f"offset {item.offset} s is at or past the end of {item.path} ({total:.3f} s long)")
    span = total - item.offset
    return span if item.duration is None else min(span, item.duration)


def plan_batches(sized: Sequence[tuple[CorpusItem, float]], batch_seconds: float) -> list[tuple[CorpusItem, ...]]:
    """Longest first, pack ``(item, seconds)`` pairs so ``max seconds x clips <= batch_seconds``.

    A clip longer than the budget is a batch of its own.  Sorting first keeps padding small;
    the longest batch comes first, so a budget too large for the device fails at once.
    """
    if not batch_seconds > 0:
        raise InputError(f"batch_seconds must be > 0, received {batch_seconds}")
    batches: list[tuple[CorpusItem, ...]] = []
    current: list[CorpusItem] = []
    longest = 0.0
    for item, seconds in sorted(sized, key=lambda pair: (-pair[1], pair[0].key)):
        if current and longest * (len(current) + 1) > batch_seconds:
            batches.append(tuple(current))
            current = []
        longest = seconds if not current else longest
        current.append(item)
    if current:
        batches.append(tuple(current))
    return batches


# --------------------------------------------------------------------------- preparing a batch


def _reason(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())  # one line, no tabs


def read_clip(item: CorpusItem) -> tuple[np.ndarray, int]:
    """The clip's samples, float32 ``[N]`` or ``[N, C]``, and its rate; only ``offset``/``duration`` are read."""
    if item.offset == 0 and item.duration is None:
        return read_audio(item.path)
    try:
        with sf.SoundFile(str(item.path)) as f:
            sr = f.samplerate
            f.seek(int(round(item.offset * sr)))
            frames = -1 if item.duration is None else int(round(item.duration * sr))
            wave = f.read(frames, dtype="float32")
    except RuntimeError as e:
        raise InputError(f"cannot read {item.path} as audio with soundfile: {e}") from e
    if wave.shape[0] == 0:
        raise InputError(f"{item.path} has no samples from {item.offset} s for {item.duration} s")
    return wave, int(sr)


@dataclass(frozen=True)
class PreparedBatch:
    """A batch ready for ``embed``: the good clips' keys and inputs, and the bad clips' failures."""

    keys: tuple[str, ...]
    paths: tuple[str, ...]
    inputs: tuple[torch.Tensor, ...] | None  # None when no clip was good
    failures: tuple[Failure, ...]
    seconds: tuple[float, ...]  # each good clip's length at the model's rate


@dataclass(frozen=True)
class BatchPreparer:
    """Per-batch CPU step, picklable: read + validate each clip alone, then ``prepare`` the good ones."""

    prepare: Callable[[Sequence[np.ndarray]], tuple[torch.Tensor, ...]]
    sample_rate: int
    min_num_samples: int

    def clip(self, item: CorpusItem) -> np.ndarray:
        """The clip, float32 mono ``[N]`` at the model's rate (:func:`w2vlab._audio.prepare_clip`)."""
        wave, sr = read_clip(item)
        return prepare_clip(wave, sr, self.min_num_samples, self.sample_rate)

    def __call__(self, batch: Sequence[CorpusItem]) -> PreparedBatch:
        good, waves, failures = [], [], []
        for item in batch:
            try:
                waves.append(self.clip(item))
                good.append(item)
            except (OSError, ValueError, TypeError, RuntimeError) as e:
                failures.append((item.key, str(item.path), _reason(e)))
        inputs = None
        if waves:
            try:
                inputs = self.prepare(waves)
            except (ValueError, TypeError, RuntimeError) as e:
                failures += [(i.key, str(i.path), f"feature computation failed: {_reason(e)}") for i in good]
                good, waves = [], []
        return PreparedBatch(
            tuple(i.key for i in good),
            tuple(str(i.path) for i in good),
            inputs,
            tuple(failures),
            tuple(len(w) / self.sample_rate for w in waves),
        )


class BatchDataset(Dataset):
    """Planned batches as a map-style dataset: item ``i`` is batch ``i`` prepared."""

    def __init__(self, batches: Sequence[Sequence[CorpusItem]], preparer: BatchPreparer):
        self.batches, self.preparer = list(batches), preparer

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> PreparedBatch:
        return self.preparer(self.batches[index])


def embed_prepared(embedder: Embedder, batch: PreparedBatch) -> tuple[list[str], np.ndarray, list[Failure]]:
    """(keys, embeddings [B', D] float32, failures): a batch the model rejects, or a non-finite
    row, becomes failures instead of an error."""
    try:
        out = embedder.embed(batch.inputs).detach().float().cpu()
    except (RuntimeError, ValueError, torch.jit.Error) as e:
        reason = f"embedding failed: {_reason(e)}"
        return [], np.zeros((0, 0), np.float32), [(k, p, reason) for k, p in zip(batch.keys, batch.paths)]
    if out.dim() != 2 or out.shape[0] != len(batch.keys):
        raise RuntimeError(
            f"the embedder returned shape {list(out.shape)} for {len(batch.keys)} clips; expected [B, D]"
        )
    finite = torch.isfinite(out).all(dim=1).tolist()
    failures = [
        (k, p, "the model produced a non-finite embedding")
        for k, p, ok in zip(batch.keys, batch.paths, finite)
        if not ok
    ]
    keys = [k for k, ok in zip(batch.keys, finite) if ok]
    return keys, out[torch.tensor(finite, dtype=torch.bool)].numpy(), failures


# --------------------------------------------------------------------------- writing


class CorpusWriter:
    """Embeddings to ``DIR/embeddings.ark`` + ``.scp`` (kaldiio), failures to ``failures.tsv``.

    Opening a directory with ``progress.json`` resumes it (same ``identity`` only); ``force``
    removes the previous outputs first; any other non-empty directory is refused.  Use as a
    context manager, or call :meth:`close`.
    """

    def __init__(self, output: str | Path, identity: Mapping[str, Any], *, force: bool = False):
        self.output = Path(output)
        self.identity = json.loads(json.dumps(dict(identity), sort_keys=True))  # as stored
        self.ark, self.scp = (self.output / ARK).resolve(), self.output / SCP
        self.done_keys: set[str] = self._open(force)
        self.skipped, self.written, self.failed = len(self.done_keys), 0, 0
        self._failures = (self.output / FAILURES).open("w", encoding="utf-8")
        self._failures.write("key\tpath\treason\n")
        self._failures.flush()

    def _open(self, force: bool) -> set[str]:
        if self.output.exists() and not self.output.is_dir():
            raise NotADirectoryError(f"output {self.output} is a file; expected a directory (or a new path)")
        ours = (self.output / PROGRESS).is_file()
        if ours and force:
            for name in OUTPUT_FILES:
                (self.output / name).unlink(missing_ok=True)
                (self.output / f".{name}.tmp").unlink(missing_ok=True)
        elif ours:
            return self._resume()
        elif self.output.is_dir() and any(self.output.iterdir()):
            raise FileExistsError(
                f"{self.output} is not empty and holds no embed-corpus output ({PROGRESS}); "
                f"choose a new or empty directory (--force replaces only embed-corpus outputs)"
            )
        self.output.mkdir(parents=True, exist_ok=True)
        self.ark.touch()
        self.scp.touch()
        self._commit(0, 0, 0)
        return set()

    def _resume(self) -> set[str]:
        path = self.output / PROGRESS
        try:
            progress = json.loads(path.read_text())
            committed = {ARK: int(progress["ark_bytes"]), SCP: int(progress["scp_bytes"])}
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(
                f"{path} is not an embed-corpus progress file ({_reason(e)}); use --force to start over"
            ) from e
        if progress.get("format") != TAG or progress.get("identity") != self.identity:
            raise InputError(
                f"{self.output} holds embeddings made by {json.dumps(progress.get('identity'), sort_keys=True)}, "
                f"not by {json.dumps(self.identity, sort_keys=True)}; resuming would mix two embedders "
                f"in one ark: choose another output directory, or pass --force to start over"
            )
        for name, size in committed.items():
            file = self.output / name
            if not file.is_file() or file.stat().st_size < size:
                raise InputError(
                    f"{file} is missing or shorter than the {size} bytes {path.name} committed (edited "
                    f"by hand?); pass --force to start over"
                )
            os.truncate(file, size)  # drop a batch written but not committed
        return set(kaldiio.load_scp(str(self.scp)).keys()) if committed[SCP] else set()

    def _commit(self, ark_bytes: int, scp_bytes: int, embedded: int) -> None:
        """Replace progress.json: from here on the ark and scp up to these sizes are the run's output."""
        write_json(
            self.output / PROGRESS,
            {
                "format": TAG,
                "identity": self.identity,
                "ark_bytes": ark_bytes,
                "scp_bytes": scp_bytes,
                "embedded": embedded,
            },
            sort_keys=True,
        )

    def write(self, keys: Sequence[str], embeddings: np.ndarray) -> None:
        """Append one batch, embeddings ``[B, D]``, and commit it."""
        if len(keys) != len(embeddings) or len(set(keys)) != len(keys) or self.done_keys.intersection(keys):
            raise InputError(f"write() needs {len(embeddings)} new, distinct keys; received {list(keys)[:5]}...")
        arrays = {k: np.ascontiguousarray(e, dtype=np.float32) for k, e in zip(keys, embeddings)}
        with self.ark.open("ab") as ark, self.scp.open("a", encoding="utf-8") as scp:
            kaldiio.save_ark(ark, arrays, scp=scp, append=True)
            for f in (ark, scp):
                f.flush()
                os.fsync(f.fileno())
            sizes = ark.tell(), scp.tell()
        self.done_keys.update(keys)
        self.written += len(keys)
        self._commit(*sizes, len(self.done_keys))

    def fail(self, key: str, path: str, reason: str) -> None:
        """Record one clip that could not be embedded."""
        self._failures.write(f"{key}\t{path}\t{' '.join(reason.split())}\n")
        self._failures.flush()
        self.failed += 1

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        """Close ``failures.tsv``; write ``summary.json`` when given one (a finished run)."""
        if not self._failures.closed:
            self._failures.close()
        if summary is not None:
            write_json(self.output / SUMMARY, dict(summary), sort_keys=True)

    def __enter__(self) -> CorpusWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class CorpusSummary:
    """What a run did; ``summary.json`` holds :meth:`to_dict`."""

    source: str
    output: str
    files: int  # clips the source lists
    done: int  # embedded by this run
    failed: int  # listed in failures.tsv
    skipped: int  # already in embeddings.scp when the run started
    audio_seconds: float  # audio embedded by this run, at the model's rate
    wall_seconds: float
    throughput: float  # audio seconds per wall second
    engine: str
    batch_seconds: float
    batches: int
    workers: int
    identity: dict[str, Any]  # what produced the embeddings (Embedder.identity)
    versions: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def headline(self) -> str:
        return (
            f"embedded {self.done} of {self.files} files ({self.skipped} already done, {self.failed} failed), "
            f"{self.audio_seconds:.1f} s of audio in {self.wall_seconds:.1f} s "
            f"({self.throughput:.1f} audio s/s) -> {self.output}"
        )


def run_local(
    batches: Sequence[Sequence[CorpusItem]],
    embedder: Embedder,
    writer: CorpusWriter,
    *,
    workers: int = 0,
    bar: Any = None,
) -> float:
    """The local engine: prepare batches in a DataLoader (``workers`` processes), embed and write
    in this process.  Returns the seconds of audio embedded."""
    preparer = BatchPreparer(embedder.prepare, embedder.sample_rate, embedder.min_num_samples)
    loader = DataLoader(BatchDataset(batches, preparer), batch_size=None, shuffle=False, num_workers=workers)
    seconds, start = 0.0, time.perf_counter()
    for batch in loader:
        failures = list(batch.failures)
        if batch.keys:
            keys, embeddings, rejected = embed_prepared(embedder, batch)
            failures += rejected
            if keys:
                writer.write(keys, embeddings)
                lengths = dict(zip(batch.keys, batch.seconds))
                seconds += sum(lengths[k] for k in keys)
        for failure in failures:
            writer.fail(*failure)
        if bar is not None:
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.update(len(batch.keys) + len(batch.failures))
            bar.set_postfix(files_per_s=f"{writer.written / elapsed:.1f}", audio_s_per_s=f"{seconds / elapsed:.1f}")
    return seconds


Engine = Callable[..., float]  # (batches, embedder, writer, *, workers, bar) -> audio seconds embedded
ENGINES: dict[str, Engine] = {"local": run_local}  # the Ray Data engine: w2vlab.corpus._ray.run_ray


def _measure(items: Sequence[CorpusItem], writer: CorpusWriter, bar: Any) -> list[tuple[CorpusItem, float]]:
    """(item, seconds) of every readable clip; unreadable ones are recorded as failures."""
    sized = []
    for item in items:
        try:
            sized.append((item, clip_seconds(item)))
        except (OSError, ValueError) as e:
            writer.fail(item.key, str(item.path), _reason(e))
            bar.update(1)
    return sized


def _versions() -> dict[str, str]:
    return {"w2vlab": __version__, "torch": torch.__version__, "kaldiio": importlib.metadata.version("kaldiio")}


def embed_corpus(
    source: str | Path,
    output: str | Path,
    embedder: Embedder,
    *,
    batch_seconds: float = DEFAULT_BATCH_SECONDS,
    workers: int = 0,
    force: bool = False,
    progress: bool = True,
    engine: str | Engine = "local",
) -> CorpusSummary:
    """Embed every clip of ``source`` into ``output`` (``embeddings.ark``/``.scp``, ``failures.tsv``,
    ``summary.json``); re-running resumes.  See the module docstring.

    Args:
        batch_seconds: budget of padded audio per batch (longest clip x clips), seconds; the
            default, 60 s, tops the plateau measured for :data:`DEFAULT_BATCH_SECONDS`.
        workers: DataLoader processes that read and prepare batches (0: this process); for the
            Ray engine, the number of actors (at least one).
        engine: "local", or an engine function such as :func:`w2vlab.corpus._ray.run_ray`.
        force: remove a previous run's outputs in ``output`` and start over.
    Raises:
        ValueError: duplicate keys, a malformed source, a resume with another embedder (all
            before anything is written); FileExistsError: ``output`` holds something else.
    """
    start = time.perf_counter()
    if not callable(engine) and engine not in ENGINES:
        raise InputError(
            f"unknown engine {engine!r}; expected one of {sorted(ENGINES)} or an engine function "
            f"(the Ray Data one is w2vlab.corpus._ray.run_ray)"
        )
    run, engine = (
        (engine, getattr(engine, "engine_name", engine.__module__.rsplit(".", 1)[-1]))
        if callable(engine)
        else (ENGINES[engine], engine)
    )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise InputError(f"workers must be an int >= 0, received {workers!r}")
    if not batch_seconds > 0:
        raise InputError(f"batch_seconds must be > 0, received {batch_seconds}")
    from tqdm.auto import tqdm

    items = read_source(source)
    with CorpusWriter(output, embedder.identity, force=force) as writer:
        todo = [item for item in items if item.key not in writer.done_keys]
        with tqdm(total=len(todo), desc="embed-corpus", unit="file", disable=not progress) as bar:
            batches = plan_batches(_measure(todo, writer, bar), batch_seconds)
            logger.info("%d files to embed in %d batches (%d already done)", len(todo), len(batches), writer.skipped)
            seconds = run(batches, embedder, writer, workers=workers, bar=bar)
        wall = time.perf_counter() - start
        summary = CorpusSummary(
            str(source),
            str(output),
            len(items),
            writer.written,
            writer.failed,
            writer.skipped,
            seconds,
            wall,
            seconds / wall,
            engine,
            float(batch_seconds),
            len(batches),
            workers,
            dict(embedder.identity),
            _versions(),
        )
        writer.close(summary.to_dict())
    return summary
