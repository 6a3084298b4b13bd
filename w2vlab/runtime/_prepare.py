"""Input preparation: prepared clips -> what a model of each mode takes (artifact, corpus, eager model).

A clip is first made mono at the model's rate and checked long enough by
:func:`w2vlab._audio.prepare_clip` (one clip at a time, so a bad one is named alone); then a
batch of prepared clips becomes the model's inputs here:

* ``waveform``: :func:`w2vlab._audio.pad_waveforms` -> (waves ``[B, N_max]`` float32, lengths ``[B]`` int64);
* ``preprocessed``, masked pooling: :func:`w2vlab._features.extractor_inputs` of the HF extractor -> one
  clip: (features ``[1, T_valid, 160]``,); several: (features ``[B, T, 160]``, mask ``[B, T]``);
* ``preprocessed``, toolkit pooling: :func:`w2vlab._features.toolkit_inputs` -> the extractor's output as
  it comes (features ``[B, T, 160]``, mask ``[B, T]`` int32) and clip_rows ``[B]``, one clip or several.

Both are what the artifact files and the eager model accept.  Consumer side: imports the leaves only.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from w2vlab._audio import pad_waveforms
from w2vlab._contract import check_mode, check_pooling
from w2vlab._features import extractor_inputs, toolkit_inputs

__all__ = ["Preparer", "model_inputs"]


def model_inputs(
    mode: str, waves: Sequence[np.ndarray], fe: Any = None, pooling: str = "masked"
) -> tuple[torch.Tensor, ...]:
    """Prepared clips (float32 mono ``[N_i]`` at the model's rate, each long enough) -> the model's inputs.

    Args:
        mode: "waveform" or "preprocessed"
        fe: the HF ``SeamlessM4TFeatureExtractor`` (preprocessed mode only)
        pooling: the artifact's (or model's) pooling, "toolkit" or "masked"
    Returns:
        waveform: ``(waves [B, N_max], lengths [B])``; preprocessed, masked: ``(features [1, T_valid, 160],)``
        for one clip, ``(features [B, T, 160], mask [B, T])`` for several; preprocessed, toolkit:
        ``(features [B, T, 160], mask [B, T], clip_rows [B])``.
    """
    if check_mode(mode) == "waveform":
        return pad_waveforms(waves)
    if fe is None:
        raise TypeError("preprocessed inputs need the feature extractor: pass fe=SeamlessM4TFeatureExtractor")
    if check_pooling(pooling) == "toolkit":
        return toolkit_inputs(fe, waves)
    return tuple(x for x in extractor_inputs(fe, waves) if x is not None)


@functools.lru_cache(maxsize=4)
def _extractor(config_json: str) -> Any:
    from transformers import SeamlessM4TFeatureExtractor

    return SeamlessM4TFeatureExtractor.from_dict(json.loads(config_json))


@dataclass(frozen=True)
class Preparer:
    """:func:`model_inputs` for one mode as a picklable callable (it holds the extractor's config, not
    the extractor, and builds that once per process): prepared clips -> the model's inputs."""

    mode: str
    extractor_config: Mapping[str, Any] | None = None  # SeamlessM4TFeatureExtractor.to_dict(); preprocessed only
    pooling: str = "masked"  # the artifact's (or model's): "toolkit" adds each clip's rows

    def __call__(self, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, ...]:
        if self.mode == "waveform":
            return model_inputs(self.mode, waves)
        if self.extractor_config is None:
            raise TypeError("Preparer('preprocessed') needs extractor_config (SeamlessM4TFeatureExtractor.to_dict())")
        fe = _extractor(json.dumps(dict(self.extractor_config), sort_keys=True))
        return model_inputs(self.mode, waves, fe, self.pooling)
