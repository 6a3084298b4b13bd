"""Consumer side: open an exported artifact directory and embed audio with it.

>>> art = load_artifact("artifacts/w2vbert_speaker")
>>> art.score(art.embed_file("a.wav"), art.embed_file("b.wav"))

Opening checks the format tag, that the file's embedded metadata equals ``metadata.json``
and that its content hash (code and every tensor) matches, for TorchScript (``.pt``),
``torch.export`` (``.pt2``) and ONNX files alike; a newer/older torch than the exporter's only
warns.  This module is the consumer: it imports the artifact contract and the loaders, never the
exporter, the eager model
or transformers' modelling code (preprocessed mode loads the saved HF feature extractor).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from w2vlab._audio import prepare_clip, read_audio
from w2vlab._contract import (
    EXTRACTOR_DIR,
    METADATA_FILE,
    ArtifactError,
    check_mode,
    file_entry,
    read_embedded_metadata,
    read_metadata,
)
from w2vlab._features import FeatureConfig
from w2vlab._parity import cosine_rows
from w2vlab.runtime._loaders import FRONTEND_THREADS, intra_op_threads, open_format, reading
from w2vlab.runtime._prepare import model_inputs

ArrayLike = np.ndarray | torch.Tensor
__all__ = ["Artifact", "ArtifactError", "load_artifact"]


class Artifact:
    """A loaded artifact: ``embed``, ``embed_file``, ``embed_batch`` and ``score``; a sequence-classification
    head adds ``classify`` and ``labels``."""

    def __init__(
        self,
        directory: str | Path,
        mode: str | None = None,
        format: str = "torchscript",
        device: str | torch.device = "cpu",
    ):
        self.directory = Path(directory)
        self.metadata = read_metadata(self.directory)
        available = list(self.metadata["artifacts"])
        self.mode = mode or ("preprocessed" if "preprocessed" in available else available[0])
        self.format = format
        self.device = torch.device(device)
        entry = file_entry(self.metadata, self.mode, format, where=str(self.directory))
        path = self.directory / entry["file"]
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; {self.directory / METADATA_FILE} lists it")
        self.feature_config = FeatureConfig.from_dict(self.metadata["feature_extractor"]["config"])
        self.pooling: str = self.metadata["pooling"]  # "toolkit" or "masked": how an odd frame count's half row pools
        self.module = self._open(path, entry)
        # A TorchScript waveform module is frontend -> encode: run as two calls, the frontend on
        # FRONTEND_THREADS (see w2vlab.runtime._loaders); the other formats compile the frontend in.
        scripted_waveform = format == "torchscript" and self.mode == "waveform"
        self._stages = (self.module.frontend, self.module.encode) if scripted_waveform else None
        exported = self.metadata["versions"]["torch"]
        if exported.split("+")[0] != torch.__version__.split("+")[0]:
            warnings.warn(f"artifact exported with torch {exported}, running torch {torch.__version__}", stacklevel=2)
        self.sample_rate: int = self.metadata["sample_rate"]
        self.embedding_dim: int = self.metadata["embedding_dim"]
        self._extractor = None
        self._classifier: tuple[torch.Tensor, torch.Tensor] | None = None

    def _open(self, path: Path, entry: dict) -> torch.nn.Module:
        """Load ``path`` and check it against ``metadata.json``: embedded metadata, then content hash."""
        module, digest = open_format(  # a corrupt file: an ArtifactError naming the format (READERS)
            path,
            self.format,
            self.mode,
            self.feature_config,
            threads=torch.get_num_threads(),
            device=self.device,
            pooling=self.pooling,
        )
        with reading(path, self.format):
            embedded = read_embedded_metadata(path, self.format)
        if embedded != self.metadata:
            raise ArtifactError(
                f"{path.name} embeds metadata that differs from {self.directory / METADATA_FILE}: the files "
                f"come from different exports or were edited; re-export instead of mixing files"
            )
        if digest != entry["content_sha256"]:
            raise ArtifactError(
                f"{path.name} content does not match the sha256 recorded in metadata.json "
                f"({entry['content_sha256'][:12]}...): the file was modified after export"
            )
        return module

    @property
    def feature_extractor(self):
        """The HF ``SeamlessM4TFeatureExtractor`` saved beside the files (preprocessed mode's input)."""
        if self._extractor is None:
            from transformers import SeamlessM4TFeatureExtractor

            self._extractor = SeamlessM4TFeatureExtractor.from_pretrained(str(self.directory / EXTRACTOR_DIR))
        return self._extractor

    def __repr__(self) -> str:
        return (
            f"Artifact({str(self.directory)!r}, mode={self.mode!r}, format={self.format!r}, "
            f"embedding_dim={self.embedding_dim})"
        )

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The loaded file on prepared inputs (on :attr:`device`): features [B, T, 160] (+ mask [B, T])
        or waveforms [B, N] (+ lengths [B]) -> [B, embedding_dim].  Same values as ``self.module``."""
        if self._stages is None:
            return self.module(*inputs)
        frontend, encode = self._stages
        with intra_op_threads(FRONTEND_THREADS):
            features, mask = frontend(*inputs)  # (B, T, 160), (B, T)
        return encode(features, mask, *inputs)  # the module's own second stage (pools as the artifact does)

    def _run(self, *inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            try:
                out = self.forward(*inputs)
            except torch.jit.Error as e:  # TorchScript re-raises `raise ValueError` as torch.jit.Error
                raise ValueError(str(e).strip().splitlines()[-1]) from e
        if not torch.isfinite(out).all():
            raise RuntimeError("the artifact produced a non-finite embedding; please report this input")
        return out

    def embed_batch(self, waves: Sequence[ArrayLike], sr: int) -> torch.Tensor:
        """Embed clips of any lengths as one padded, masked batch: [B, embedding_dim]."""
        if len(waves) == 0:
            raise ValueError("embed_batch got no clips")
        minimum = self.metadata["min_num_samples"]
        waves = [prepare_clip(w, sr, minimum, self.sample_rate) for w in waves]  # (N_i,) each
        fe = self.feature_extractor if self.mode == "preprocessed" else None
        inputs = model_inputs(self.mode, waves, fe, self.pooling)  # see w2vlab.runtime._prepare
        return self._run(*(x.to(self.device) for x in inputs)).cpu()

    def embed(self, wave: ArrayLike, sr: int) -> torch.Tensor:
        """Embed one clip (mono or multi-channel, float or integer PCM, any rate): [embedding_dim]."""
        return self.embed_batch([wave], sr)[0]

    def embed_file(self, path: str | Path) -> torch.Tensor:
        wave, sr = read_audio(path)
        return self.embed(wave, sr)

    @property
    def labels(self) -> list[str] | None:
        """The class names of a sequence-classification head (index order), else None."""
        id2label = self.metadata["model"].get("head", {}).get("id2label")
        return None if id2label is None else [id2label[str(i)] for i in range(len(id2label))]

    def classify(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Class logits of a sequence-classification head: embeddings [B, D] (or [D]) -> [B, L] (or [L]).

        ``embedding @ weight.T + bias`` with the classifier saved beside the programs (its sha256 is checked
        against ``metadata.json``); names of the L classes: :attr:`labels`."""
        if self._classifier is None:
            self._classifier = self._read_classifier()
        weight, bias = self._classifier
        if embeddings.shape[-1] != weight.shape[1] or embeddings.dim() not in (1, 2):
            raise ValueError(
                f"classify expects embeddings [B, {weight.shape[1]}] or [{weight.shape[1]}]; "
                f"got {list(embeddings.shape)}"
            )
        return torch.nn.functional.linear(embeddings.detach().cpu().float(), weight, bias)

    def _read_classifier(self) -> tuple[torch.Tensor, torch.Tensor]:
        import hashlib

        from safetensors.torch import load

        record = self.metadata["model"].get("head", {}).get("classifier")
        if record is None:
            raise ArtifactError(
                f"{self.directory} holds a {self.metadata['model'].get('head', {}).get('architecture', 'speaker')} "
                f"head without a classifier; only a sequence-classification export has logits"
            )
        path = self.directory / record["file"]
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; {self.directory / METADATA_FILE} lists it")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise ArtifactError(f"{path.name} does not match the sha256 in metadata.json: modified after export")
        tensors = load(data)
        return tensors["weight"].float(), tensors["bias"].float()

    @staticmethod
    def score(a: torch.Tensor, b: torch.Tensor) -> float:
        """Cosine similarity of two embeddings [D]."""
        if a.shape != b.shape or a.dim() != 1:
            raise ValueError(f"score expects two embeddings of shape [D]; got {list(a.shape)} and {list(b.shape)}")
        return float(cosine_rows(a.detach().cpu().double().numpy()[None], b.detach().cpu().double().numpy()[None])[0])


def load_artifact(
    directory: str | Path, mode: str | None = None, format: str = "torchscript", device: str | torch.device = "cpu"
) -> Artifact:
    """Open an artifact directory written by :func:`w2vlab.export._pipeline.export`.

    Args:
        mode: "preprocessed" or "waveform"; default: preprocessed when present.
        format: "torchscript" (``.pt``), "exported" (``torch.export`` ``.pt2``), "onnx" or
            "onnx-int8" (run by ONNX Runtime with ``torch.get_num_threads()`` threads; the int8
            copy matches eager to cosine >= 0.999, not exactly), "aoti" (an AOTInductor package) or
            "openvino" (OpenVINO IR, compiled for the CPU at f32 with ``torch.get_num_threads()``
            threads); each is checked the same way.
        device: where TorchScript and ``.pt2`` weights are mapped ("cuda" on a GPU machine);
            inputs are moved there and embeddings come back on the CPU.
    """
    if mode is not None:
        check_mode(mode)
    return Artifact(directory, mode, format, device)
