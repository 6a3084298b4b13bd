"""The eager model as a corpus embedder (``Embedder`` of :mod:`w2vlab.corpus._embed`): ``embed-corpus --model-path``.

The reference engine for a corpus: the checkpoint loaded by
:func:`w2vlab.model._checkpoint.load_speaker_encoder`, fed the HF extractor's features (one clip: its
valid rows, no mask; several: the padded batch + mask, as :func:`w2vlab._features.extractor_inputs`
returns them).  Exporter side (it builds the modelling code); the CLI imports it only when
``--model-path`` is given, and :mod:`w2vlab.corpus._embed` never does.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from w2vlab._contract import canonical_sha256
from w2vlab._features import FeatureConfig
from w2vlab.model._checkpoint import feature_extractor_for, load_speaker_encoder, sha256_file
from w2vlab.runtime._prepare import Preparer

__all__ = ["EagerEmbedder"]


class EagerEmbedder:
    """A checkpoint's eager speaker encoder, always on preprocessed-style inputs."""

    def __init__(
        self,
        model_path: str | Path,
        checkpoint: str | Path | None = None,
        config: str | Path | Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
        pooling: str | None = None,
    ):
        loaded = load_speaker_encoder(model_path, checkpoint, config, pooling=pooling)
        fe = feature_extractor_for(loaded)
        features = FeatureConfig.from_extractor(fe)
        self.device = torch.device(device)
        self.model = loaded.model.to(self.device).eval()
        self.mode = "preprocessed"
        self.sample_rate = features.sampling_rate
        self.min_num_samples = max(features.min_num_samples, loaded.min_num_samples or 0)  # an x-vector's TDNN
        override = sha256_file(config) if isinstance(config, (str, Path)) else canonical_sha256(dict(config or {}))
        self.identity = {
            "kind": "eager",
            "model_path": str(Path(model_path).resolve()),
            "source_sha256": dict(loaded.source_sha256),
            "config_sha256": override,
            "pooling": loaded.head.pooling_choice,
        }
        self.prepare = Preparer("preprocessed", fe.to_dict(), loaded.head.pooling_choice)
        self.recipe = functools.partial(EagerEmbedder, model_path, checkpoint, config, pooling=pooling)

    def embed(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """(features [B, T, 160],), (features, mask [B, T]) or, toolkit pooling, (features, mask, clip_rows [B])
        -> embeddings [B, D] on the CPU."""
        with torch.inference_mode():
            return self.model(*(x.to(self.device) for x in inputs)).cpu()

    def __repr__(self) -> str:
        return f"EagerEmbedder({self.identity['model_path']!r}, {sorted(self.identity['source_sha256'])})"
