"""Consumer side: open an exported artifact directory and embed audio with it.

>>> art = load_artifact("artifacts/w2vbert_speaker")
>>> art.score(art.embed_file("a.wav"), art.embed_file("b.wav"))

Opening checks the format tag, that the file's embedded metadata equals ``metadata.json``
and that the weights hash matches, for TorchScript (``.pt``), ``torch.export`` (``.pt2``) and
ONNX files alike; a newer/older torch than the exporter's only warns.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .audio import prepare_waveform, read_audio
from .export import EXTRACTOR_DIR, FORMAT_TAG, MODES
from .suite import Case, hf_features, waveform_batch

ArrayLike = np.ndarray | torch.Tensor


class ArtifactError(ValueError):
    """The directory is not a usable w2vlab artifact (missing, foreign, tampered or mixed up)."""


def read_metadata(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / "metadata.json"
    if not directory.is_dir():
        raise FileNotFoundError(f"artifact directory not found: {directory}")
    if not path.is_file():
        raise ArtifactError(f"{directory} has no metadata.json; is it a w2vlab export directory?")
    try:
        metadata = json.loads(path.read_text())
    except ValueError as e:
        raise ArtifactError(f"{path} is not valid JSON: {e}") from e
    if metadata.get("format") != FORMAT_TAG:
        raise ArtifactError(f"{path} has format {metadata.get('format')!r}; this w2vlab reads {FORMAT_TAG!r}")
    return metadata


def format_entries(metadata: Mapping[str, Any], mode: str) -> dict[str, dict[str, Any]]:
    """Format -> file entry (file, parity, content_sha256) of ``mode`` in an artifact's metadata;
    artifacts written before formats existed have only the TorchScript archive."""
    art = metadata["artifacts"][mode]
    legacy = {"file": art["file"], "parity": art["parity"], "content_sha256": metadata["model"]["weights_sha256"]}
    return dict(art.get("formats", {"torchscript": legacy}))


class Artifact:
    """A loaded artifact: ``embed``, ``embed_file``, ``embed_batch`` and ``score``."""

    def __init__(self, directory: str | Path, mode: str | None = None, format: str = "torchscript"):
        from transformers import SeamlessM4TFeatureExtractor

        from .features import FeatureConfig
        from .formats import FORMATS, open_format, read_metadata as embedded_metadata

        self.directory = Path(directory)
        self.metadata = read_metadata(self.directory)
        available = list(self.metadata["artifacts"])
        self.mode = mode or ("preprocessed" if "preprocessed" in available else available[0])
        if self.mode not in available:
            raise ArtifactError(f"{self.directory} has no {self.mode!r} artifact; it has {available}")
        if format not in FORMATS:
            raise ValueError(f"unknown format {format!r}; expected one of {FORMATS}")
        entries = format_entries(self.metadata, self.mode)
        if format not in entries:
            raise ArtifactError(f"{self.directory} has no {format!r} file for {self.mode} mode; it has {list(entries)} "
                                f"(export with --format {format} or --format all)")
        self.format = format
        path = self.directory / entries[format]["file"]
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; metadata.json lists it")
        self.feature_extractor = SeamlessM4TFeatureExtractor.from_pretrained(str(self.directory / EXTRACTOR_DIR))
        try:
            self.module, digest = open_format(path, format, self.mode, FeatureConfig.from_extractor(self.feature_extractor),
                                              threads=torch.get_num_threads())
            embedded = embedded_metadata(path, format)
        except (RuntimeError, OSError, ValueError, zipfile.BadZipFile) as e:
            reader = {"torchscript": "a TorchScript archive torch.jit.load", "exported": "a .pt2 program torch.export.load"}
            raise ArtifactError(f"{path} is not {reader.get(format, 'an ONNX model ONNX Runtime')} can read: "
                                f"{str(e).splitlines()[0]}") from e
        if embedded != self.metadata:
            raise ArtifactError(
                f"{path.name} embeds metadata that differs from {self.directory / 'metadata.json'}: the files "
                f"come from different exports or were edited; re-export instead of mixing files"
            )
        want = entries[format]["content_sha256"]
        if digest != want:
            raise ArtifactError(f"{path.name} weights do not match the sha256 recorded in metadata.json ({want[:12]}...)")
        exported = self.metadata["versions"]["torch"]
        if exported.split("+")[0] != torch.__version__.split("+")[0]:
            warnings.warn(f"artifact exported with torch {exported}, running torch {torch.__version__}", stacklevel=2)
        self.sample_rate: int = self.metadata["sample_rate"]
        self.embedding_dim: int = self.metadata["embedding_dim"]

    def __repr__(self) -> str:
        return (f"Artifact({str(self.directory)!r}, mode={self.mode!r}, format={self.format!r}, "
                f"embedding_dim={self.embedding_dim})")

    def _prepare(self, wave: ArrayLike, sr: int) -> np.ndarray:
        wave = prepare_waveform(wave, sr, self.sample_rate)
        minimum = self.metadata["min_num_samples"]
        if len(wave) < minimum:
            raise ValueError(
                f"audio too short: {len(wave)} samples at {self.sample_rate} Hz after resampling; "
                f"the encoder needs at least {minimum} ({minimum / self.sample_rate * 1000:.0f} ms)"
            )
        return wave

    def _run(self, *inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            try:
                out = self.module(*inputs)
            except torch.jit.Error as e:  # TorchScript re-raises `raise ValueError` as torch.jit.Error
                raise ValueError(str(e).strip().splitlines()[-1]) from e
        if not torch.isfinite(out).all():
            raise RuntimeError("the artifact produced a non-finite embedding; please report this input")
        return out

    def embed_batch(self, waves: Sequence[ArrayLike], sr: int) -> torch.Tensor:
        """Embed clips of any lengths as one padded, masked batch: [B, embedding_dim]."""
        if len(waves) == 0:
            raise ValueError("embed_batch got no clips")
        case = Case("batch", tuple(self._prepare(w, sr) for w in waves))
        if self.mode == "waveform":
            return self._run(*waveform_batch(case))
        # one clip: its valid feature rows, no mask (the seed's call); several: padded + mask
        return self._run(*[x for x in hf_features(self.feature_extractor, case) if x is not None])

    def embed(self, wave: ArrayLike, sr: int) -> torch.Tensor:
        """Embed one clip (mono or multi-channel, float or integer PCM, any rate): [embedding_dim]."""
        return self.embed_batch([wave], sr)[0]

    def embed_file(self, path: str | Path) -> torch.Tensor:
        wave, sr = read_audio(path)
        return self.embed(wave, sr)

    @staticmethod
    def score(a: torch.Tensor, b: torch.Tensor) -> float:
        """Cosine similarity of two embeddings [D]."""
        if a.shape != b.shape or a.dim() != 1:
            raise ValueError(f"score expects two embeddings of shape [D]; got {list(a.shape)} and {list(b.shape)}")
        return max(-1.0, min(1.0, float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))))


def load_artifact(directory: str | Path, mode: str | None = None, format: str = "torchscript") -> Artifact:
    """Open an artifact directory written by :func:`w2vlab.export.export`.

    Args:
        mode: "preprocessed" or "waveform"; default: preprocessed when present.
        format: "torchscript" (``.pt``), "exported" (``torch.export`` ``.pt2``), "onnx" or
            "onnx-int8" (run by ONNX Runtime with ``torch.get_num_threads()`` threads; the int8
            copy matches eager to cosine >= 0.999, not exactly); each is checked the same way.
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    return Artifact(directory, mode, format)
