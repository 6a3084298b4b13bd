"""The speaker models ``transformers`` itself trains: ``Wav2Vec2BertForXVector`` and ``...ForSequenceClassification``.

A researcher who fine-tunes ``facebook/w2v-bert-2.0`` with HF ``Trainer`` gets a folder whose
``config.json`` names one of these classes in ``architectures``, beside ``model.safetensors``
(and, when the processor was saved too, ``preprocessor_config.json``).  w2vlab builds the *stock*
class from that config and loads the weights strictly; nothing of the heads is re-implemented
except one step that no export can capture as written, below.

* **x-vector** (:class:`~transformers.Wav2Vec2BertForXVector`): encoder -> ``projector`` -> TDNN
  layers -> mean and (unbiased) standard deviation over each clip's valid TDNN frames ->
  ``feature_extractor``; the output ``embeddings`` is the speaker embedding.  The training-only
  AM-softmax weights ``objective.*`` are dropped (logged, and noted in the metadata); the
  ``classifier`` Linear, which only feeds that loss, is not part of the embedding.
* **sequence classification** (:class:`~transformers.Wav2Vec2BertForSequenceClassification`):
  encoder -> ``projector`` -> mean over the valid frames -> ``classifier``.  The embedding is the
  pooled projector output (the classifier's input); the classifier (weight [L, D], bias [L]) travels
  beside the programs as ``classifier.safetensors``, with ``id2label`` in the metadata, so the
  artifact keeps its one output and the logits are ``embedding @ weight.T + bias``
  (:meth:`w2vlab.runtime.Artifact.classify`).

:class:`HFSpeakerHead` is the module the exporter sees: ``forward(input_features [B, T, 160],
attention_mask [B, T]) -> [B, D]``.  Run eagerly it *is* the stock model's own forward (the
x-vector's ``embeddings``, the classification model's classifier input, read by a forward hook),
so the export's reference is HF's forward itself.  While a format captures it (``torch.jit.trace``,
``torch.export``, and through it ONNX and AOTInductor) it runs the same stock modules with the
pooling written as masked tensor operations: HF's x-vector pools in a Python loop over the batch
(``hidden_states[i, :length]``), which a trace unrolls for the example's batch size and which
``torch.export`` cannot take with a dynamic batch.  The parity suite compares every exported file
with the eager (stock) forward, so any difference between the two forms fails the export.

Batches.  The sequence classifier pools each clip's valid frames (HF's own mask), so a clip's
embedding is the same alone or in a padded batch up to float rounding.  HF's x-vector is not:
``_get_tdnn_output_lengths`` counts TDNN frames without the dilation, so with a dilated TDNN
(HF's default ``tdnn_dilation`` is ``(1, 2, 3, 1, 1)``) the batched forward pools
``sum((kernel - 1) * (dilation - 1))`` (6) more frames per padded clip than the clip has, frames
that read the padding; a clip of the longest length gets all of its frames because the slice stops
at the tensor's end.  On the tiny test model that moved padded clips' embeddings by 14-18% of their
largest value.  w2vlab pools only the TDNN frames that read the clip's own rows, ``rows - sum((kernel - 1)
* dilation)``, which is what HF's forward gives each clip *alone*; the eager reference runs each clip of a
masked batch alone to match (:meth:`HFSpeakerHead.stock`), so batches are verified against HF's forward
clip by clip.

The x-vector head needs ``sum((kernel - 1) * dilation) + 2`` feature rows (16 rows, 5360 samples at
16 kHz, with HF's default TDNN): fewer give no TDNN frame (HF's forward fails) or one (its standard
deviation is NaN).  :attr:`HFHead.min_num_samples` carries it into the metadata, so every consumer
refuses shorter clips, and the parity suite leaves them out.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from w2vlab._contract import InputError
from w2vlab._features import FeatureConfig
from w2vlab.model._config import PRUNING_FIELDS

XVECTOR, SEQUENCE_CLASSIFICATION = "Wav2Vec2BertForXVector", "Wav2Vec2BertForSequenceClassification"
ARCHITECTURES = (XVECTOR, SEQUENCE_CLASSIFICATION)
CONFIG_FILE = "config.json"
CLASSIFIER_FILE = "classifier.safetensors"  # beside the programs: the sequence classifier's weight and bias
DROPPED_PREFIX = "objective."  # the x-vector's AM-softmax loss weights: training only
# The config fields each head reads, recorded in the metadata's ``source.config``.
HEAD_FIELDS = {
    XVECTOR: ("tdnn_dim", "tdnn_kernel", "tdnn_dilation", "xvector_output_dim", "use_weighted_layer_sum"),
    SEQUENCE_CLASSIFICATION: ("classifier_proj_size", "num_labels", "use_weighted_layer_sum"),
}


def architecture_of(model_path: str | Path) -> str | None:
    """The HF speaker head named by ``model_path/config.json`` (``architectures``), or None.

    None for a file, a folder without ``config.json``, and a config naming another class (the base
    ``Wav2Vec2BertModel`` of w2vlab's own layout among them)."""
    path = Path(model_path) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        names = json.loads(path.read_text()).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return None  # the base path reads it again and reports what is wrong
    found = [name for name in names if name in ARCHITECTURES]
    if len(found) > 1:
        raise InputError(f"{path} names both {found} in architectures; expected one speaker head")
    return found[0] if found else None


@dataclass(frozen=True)
class HFHead:
    """What the metadata records as ``model.head`` for a ``transformers`` speaker head."""

    architecture: str  # XVECTOR or SEQUENCE_CLASSIFICATION
    embedding_dim: int  # D of the artifact's output
    output: str  # which tensor the artifact returns, in words
    pooling: str  # how the head pools frames, in words
    min_num_samples: int  # shortest clip the head embeds, in samples at the extractor's rate
    id2label: dict[str, str] | None = None  # sequence classification: class index -> label
    classifier: dict[str, Any] | None = None  # {"file", "sha256", "shape"}: the classifier beside the programs

    kind = "transformers"
    pooling_choice = "masked"  # HF pools by the extractor's mask: an odd frame count's half row is left out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **{k: v for k, v in dataclasses.asdict(self).items() if v is not None}}


def build_config(config: Mapping[str, Any]) -> Any:
    """The ``Wav2Vec2BertConfig`` of ``config`` (a ``config.json`` dict), eager attention; pruned configs refused."""
    from transformers import Wav2Vec2BertConfig

    pruned = sorted(set(PRUNING_FIELDS) & set(config))
    if pruned:
        raise InputError(
            f"config.json names {config['architectures']} but carries per-layer pruning fields {pruned}: the stock "
            f"transformers classes cannot build a pruned student; export it in w2vlab's own layout instead"
        )
    if config.get("add_adapter"):
        raise InputError(
            f"config.json names {config['architectures']} with add_adapter=true; w2vlab exports these heads "
            f"without the strided adapter (HF's sequence classifier refuses it too)"
        )
    cfg = Wav2Vec2BertConfig(**dict(config))
    cfg._attn_implementation = "eager"  # the relative-key bias is added the same way on every export path
    return cfg


def build_model(architecture: str, cfg: Any) -> nn.Module:
    """The stock ``transformers`` class, randomly initialised, in eval mode, without ``objective``."""
    import transformers

    model = getattr(transformers, architecture)(cfg)
    for module in (model, model.wav2vec2_bert):  # stops TorchScript's attribute probing logging about loss_type
        module.loss_function = None
    if architecture == XVECTOR:
        model.objective = None  # AM-softmax: training only, its weights are dropped on load
    return model.eval()


def select_state(state: Mapping[str, torch.Tensor], architecture: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``state`` without the x-vector's ``objective.*`` (with a note); every other key is kept for strict loading."""
    dropped = sorted(k for k in state if architecture == XVECTOR and k.startswith(DROPPED_PREFIX))
    notes = (
        [f"dropped the training-only AM-softmax weights {dropped} (objective.*, not part of the embedding)"]
        if dropped
        else []
    )
    return {k: v for k, v in state.items() if k not in dropped}, notes


def tdnn_context(cfg: Any) -> int:
    """Feature rows the TDNN stack consumes: a clip of T rows gives ``T - context`` TDNN frames."""
    return sum((k - 1) * d for k, d in zip(cfg.tdnn_kernel, cfg.tdnn_dilation))


def min_num_samples(architecture: str, cfg: Any, fe_config: FeatureConfig) -> int:
    """Shortest clip the head embeds, in samples at the extractor's rate.

    x-vector: ``tdnn_context + 2`` feature rows (two TDNN frames, so the standard deviation is
    defined); a row stacks ``stride`` 10 ms frames.  Sequence classification: the extractor's own minimum."""
    if architecture != XVECTOR:
        return fe_config.min_num_samples
    rows = tdnn_context(cfg) + 2
    return max(fe_config.min_num_samples, fe_config.frame_length + (fe_config.stride * rows - 1) * fe_config.hop_length)


def head_record(architecture: str, cfg: Any, minimum: int, classifier: dict[str, Any] | None) -> HFHead:
    """The :class:`HFHead` of a loaded model."""
    if architecture == XVECTOR:
        return HFHead(
            architecture,
            cfg.xvector_output_dim,
            "`embeddings` of XVectorOutput (the x-vector; `logits` feed the training loss only)",
            f"TDNN {list(cfg.tdnn_dim)} -> mean and standard deviation over each clip's valid TDNN frames",
            minimum,
        )
    return HFHead(
        architecture,
        cfg.classifier_proj_size,
        "the pooled projector output (the classifier's input); logits = embedding @ weight.T + bias "
        f"from {CLASSIFIER_FILE}",
        "mean of the projector output over each clip's valid frames",
        minimum,
        id2label={str(k): str(v) for k, v in sorted(cfg.id2label.items())},
        classifier=classifier,
    )


def classifier_file(model: nn.Module) -> tuple[bytes, dict[str, Any]]:
    """The sequence classifier as ``safetensors`` bytes (``weight`` [L, D], ``bias`` [L]) and its record."""
    import hashlib

    from safetensors.torch import save

    tensors = {
        "weight": model.classifier.weight.detach().contiguous().clone(),
        "bias": model.classifier.bias.detach().contiguous().clone(),
    }
    data = save(tensors, metadata={"format": "pt"})
    record = {
        "file": CLASSIFIER_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "shape": list(tensors["weight"].shape),
    }
    return data, record


def source_record(architecture: str, raw: Mapping[str, Any], hashes: Mapping[str, str], weights: str) -> dict:
    """Where the weights came from, for the metadata and the model card (file names, no paths)."""
    return {
        "toolkit": "transformers",
        "architecture": architecture,
        "config_file": CONFIG_FILE,
        "config_sha256": hashes[CONFIG_FILE],
        "config": {k: raw[k] for k in ("architectures", *HEAD_FIELDS[architecture]) if k in raw},
        "checkpoint": weights,
        "checkpoint_sha256": hashes[weights],
    }


def _capturing() -> bool:
    """Whether a format is capturing the module (TorchScript trace, ``torch.export``, dynamo)."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()


@dataclass
class _Hook:
    """Keeps the first positional input of each call of the module it is registered on."""

    seen: list[torch.Tensor] = field(default_factory=list)

    def __call__(self, module: nn.Module, args: tuple) -> None:
        self.seen.append(args[0])


class HFSpeakerHead(nn.Module):
    """A stock ``transformers`` speaker head as w2vlab's encoder: features [B, T, 160] (+ mask [B, T]) -> [B, D].

    Eager: the stock model's forward (see the module docstring).  Captured: the same stock modules,
    with the pooling as masked tensor operations.  State-dict keys are the stock model's (under ``hf.``).
    """

    pooling_choice = "masked"  # HF's own pooling, by the extractor's mask (w2vlab._contract.POOLINGS)

    def __init__(self, hf: nn.Module, architecture: str):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise InputError(f"unknown speaker head {architecture!r}; expected one of {ARCHITECTURES}")
        self.hf = hf
        self.architecture = architecture

    @property
    def feature_dim(self) -> int:
        return self.hf.config.feature_projection_input_dim

    @property
    def embedding_dim(self) -> int:
        cfg = self.hf.config
        return cfg.xvector_output_dim if self.architecture == XVECTOR else cfg.classifier_proj_size

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_features [B, T, 160] float32, attention_mask [B, T] (1 = real) -> embeddings [B, D]."""
        if _capturing():
            return self.captured(input_features, attention_mask)
        return self.stock(input_features, attention_mask)

    def stock(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The stock model's own forward: the x-vector's ``embeddings``, or the classifier's input [B, D].

        The x-vector runs each clip of a masked batch alone, on its valid rows: HF's batched forward
        pools TDNN frames that read padding when a TDNN layer is dilated (see the module docstring)."""
        if self.architecture == XVECTOR:
            if attention_mask is None:
                return self.hf(input_features).embeddings
            rows = attention_mask.sum(dim=1).tolist()
            return torch.cat([self.hf(input_features[i : i + 1, :n]).embeddings for i, n in enumerate(rows)])
        hook = _Hook()
        handle = self.hf.classifier.register_forward_pre_hook(hook)
        try:
            self.hf(input_features, attention_mask=attention_mask)
        finally:
            handle.remove()
        return hook.seen[0]

    def logits(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The stock model's own ``logits`` [B, L] (sequence classification: the class scores)."""
        return self.hf(input_features, attention_mask=attention_mask).logits

    def _hidden(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The projector's input [B, T, H]: the encoder's last layer, or HF's softmax-weighted layer sum."""
        hf = self.hf
        if not hf.config.use_weighted_layer_sum:
            return hf.wav2vec2_bert(input_features, attention_mask=attention_mask).last_hidden_state
        states = hf.wav2vec2_bert(input_features, attention_mask=attention_mask, output_hidden_states=True)
        stacked = torch.stack(states.hidden_states, dim=1)  # (B, L + 1, T, H)
        weights = nn.functional.softmax(hf.layer_weights, dim=-1)
        return (stacked * weights.view(-1, 1, 1)).sum(dim=1)

    def captured(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The stock modules with the pooling as masked tensor operations: [B, T, 160] (+ [B, T]) -> [B, D]."""
        hf = self.hf
        hidden = hf.projector(self._hidden(input_features, attention_mask))  # (B, T, P)
        batch, frames = hidden.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones(batch, frames, dtype=torch.long, device=hidden.device)
        if self.architecture == SEQUENCE_CLASSIFICATION:
            keep = hf._get_feature_vector_attention_mask(frames, attention_mask)  # (B, T) bool, HF's own
            return (hidden * keep[..., None].to(hidden.dtype)).sum(dim=1) / keep.sum(dim=1).view(-1, 1)
        context = tdnn_context(hf.config)
        hidden = nn.functional.pad(hidden, (0, 0, 0, context))  # (B, T + context, P): no clip is shorter than a kernel
        for layer in hf.tdnn:
            hidden = layer(hidden)  # stock TDNN layers; (B, T, P') at the end
        lengths = attention_mask.sum(dim=1) - context  # (B,) TDNN frames that read only valid rows
        keep = (torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]).to(hidden.dtype)
        count = lengths.to(hidden.dtype)[:, None]  # (B, 1)
        mean = (hidden * keep[..., None]).sum(dim=1) / count  # (B, P')
        var = (((hidden - mean[:, None, :]) * keep[..., None]) ** 2).sum(dim=1) / (count - 1)  # unbiased, as torch.std
        return hf.feature_extractor(torch.cat([mean, var.sqrt()], dim=-1))
