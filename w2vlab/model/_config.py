"""Configuration: the speaker head's hyper-parameters and the (possibly pruned) encoder config.

Two kinds of configuration travel with every model and artifact:

* :class:`HeadConfig` — a small frozen dataclass for the layers w2vlab adds on top of the
  HF encoder (adapters, attentive statistics pooling, bottleneck), saved as JSON.
* the HF ``Wav2Vec2BertConfig`` dict, optionally carrying the per-layer fields of a
  structured-pruning student (arXiv 2510.04213).  :func:`normalise_pruning` makes those
  lists complete and consistent with the weights, and records every change it made.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from w2vlab._contract import SAMPLE_RATE, InputError, check_pooling

# Per-layer fields of a pruned student, and the training-only fields that come with them.
PRUNING_FIELDS = (
    "num_attention_heads_group",  # int per layer; head size stays hidden / num_attention_heads
    "use_attention",  # bool per layer; False: no attention block, no attention layer norm
    "intermediate_size_group",  # [ffn1, ffn2] widths per layer
    "use_feed_forward",  # [bool, bool] per layer
    "conv_group",  # [in_channels, channels] per layer
)
TRAINING_ONLY_FIELDS = ("prune", "limit_l", "limit_r", "temperature")


# w2v-bert-2.0's preprocessor_config.json values (SeamlessM4TFeatureExtractor).
W2VBERT_PREPROCESSOR = {
    "feature_extractor_type": "SeamlessM4TFeatureExtractor",
    "feature_size": 80,
    "num_mel_bins": 80,
    "padding_side": "right",
    "padding_value": 1,
    "processor_class": "Wav2Vec2BertProcessor",
    "return_attention_mask": True,
    "sampling_rate": SAMPLE_RATE,
    "stride": 2,
}


OLD_EMBEDDING_KEY = "embd_dim"  # HeadConfig.embedding_dim's name in files written before the rename


@dataclass(frozen=True)
class HeadConfig:
    """Hyper-parameters of the speaker head: MFA adapters -> ASP -> bottleneck."""

    n_mfa_layers: int = -1  # hidden states aggregated, counted from the last; -1: all (embeddings + every layer)
    adapter_dim: int = 128  # width of each per-layer adapter Linear(d_model, a) -> LN -> ReLU -> Linear(a, a)
    attention_channels: int = 128  # bottleneck of the ASP attention Conv1d(F, c, 1) -> ... -> Conv1d(c, F, 1)
    embedding_dim: int = 256  # speaker embedding size (files written before the rename call it ``embd_dim``)
    # an odd frame count's half row: "toolkit" pools it (WeSpeaker, the reference recipe), "masked" does not
    pooling: str = "masked"

    def __post_init__(self) -> None:
        check_pooling(self.pooling)

    @property
    def pooling_choice(self) -> str:
        """``"toolkit"`` or ``"masked"``: what the artifact records (an HF head's is always ``"masked"``)."""
        return self.pooling

    def resolved_mfa_layers(self, num_hidden_layers: int) -> int:
        """Number of aggregated hidden states for an encoder with ``num_hidden_layers`` layers."""
        available = num_hidden_layers + 1
        n = available if self.n_mfa_layers == -1 else self.n_mfa_layers
        if not 1 <= n <= available:
            raise InputError(
                f"n_mfa_layers={self.n_mfa_layers} but the encoder has {available} hidden states "
                f"(embeddings + {num_hidden_layers} layers); use -1 or a value in [1, {available}]"
            )
        return n

    def to_dict(self) -> dict[str, int | str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HeadConfig:
        """Build from :meth:`to_dict` output; the old key ``embd_dim`` (earlier ``speaker_head.json``
        files, the reference recipe) is read as ``embedding_dim``."""
        d = dict(d)
        if OLD_EMBEDDING_KEY in d:
            old = d.pop(OLD_EMBEDDING_KEY)
            if d.setdefault("embedding_dim", old) != old:
                raise InputError(
                    f"the head config gives embedding_dim={d['embedding_dim']} and its old name "
                    f"{OLD_EMBEDDING_KEY}={old}; keep one"
                )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown HeadConfig fields {unknown}; expected a subset of {sorted(known)}")
        return cls(**{k: v if k == "pooling" else int(v) for k, v in d.items()})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> HeadConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def merge_config(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return ``base`` updated with ``override`` (seed step 2); neither input is modified."""
    merged = dict(base)
    merged.update(override or {})
    return merged


def is_pruned(config: Mapping[str, Any]) -> bool:
    """Whether an encoder config carries per-layer pruning fields (a structured-pruning student)."""
    return any(field in config for field in PRUNING_FIELDS)


def _layer_prefix(i: int) -> str:
    return f"encoder.layers.{i}."


def infer_layer_shapes(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, list]:
    """Read the per-layer pruning fields off encoder weights (keys as in stock ``Wav2Vec2BertModel``)."""
    head_size = config["hidden_size"] // config["num_attention_heads"]
    shapes: dict[str, list] = {field: [] for field in PRUNING_FIELDS}
    for i in range(config["num_hidden_layers"]):
        p = _layer_prefix(i)
        q = state_dict.get(p + "self_attn.linear_q.weight")
        shapes["use_attention"].append(q is not None)
        shapes["num_attention_heads_group"].append(0 if q is None else q.shape[0] // head_size)
        widths, used = [], []
        for ffn in ("ffn1", "ffn2"):
            w = state_dict.get(f"{p}{ffn}.intermediate_dense.weight")
            widths.append(0 if w is None else w.shape[0])
            used.append(w is not None)
        shapes["intermediate_size_group"].append(widths)
        shapes["use_feed_forward"].append(used)
        pw1 = state_dict.get(p + "conv_module.pointwise_conv1.weight")  # (2 * channels, in, 1)
        shapes["conv_group"].append(None if pw1 is None else [pw1.shape[1], pw1.shape[0] // 2])
    return shapes


def layer_widths(config: Mapping[str, Any]) -> dict[str, list[int]]:
    """Per-layer widths of a normalised pruned config, for plotting: heads, ffn1, ffn2, conv channels."""
    return {
        "heads": list(config["num_attention_heads_group"]),
        "ffn1": [w[0] for w in config["intermediate_size_group"]],
        "ffn2": [w[1] for w in config["intermediate_size_group"]],
        "conv": [c[1] for c in config["conv_group"]],
    }


def _dense_defaults(config: Mapping[str, Any]) -> dict[str, list]:
    n, h, i = config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]
    return {
        "num_attention_heads_group": [config["num_attention_heads"]] * n,
        "use_attention": [True] * n,
        "intermediate_size_group": [[i, i] for _ in range(n)],
        "use_feed_forward": [[True, True] for _ in range(n)],
        "conv_group": [[h, h] for _ in range(n)],
    }


def normalise_pruning(
    config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Complete and check the per-layer pruning fields of an encoder config.

    Per-layer lists are made ``num_hidden_layers`` long.  With weights at hand the sizes are
    read off the tensors and every config value is checked against them; a list of the wrong
    length keeps the entries it gives (checked like any other: one that contradicts the
    weights is an error naming the field, the layer and both values), a short one is completed
    from the weights and a long one loses its entries past the last layer.  Without weights a
    wrong length is an error.  Absent blocks are made consistent (no attention <=> 0 heads,
    no FFN <=> width 0).

    Returns:
        (normalised config, notes): one human-readable note per change, for the metadata.
    """
    cfg = dict(config)
    if not is_pruned(cfg):
        return cfg, []
    n_layers = cfg["num_hidden_layers"]
    notes: list[str] = []
    for field in TRAINING_ONLY_FIELDS:
        if field == "prune" and cfg.get("prune"):
            notes.append("prune: true -> false (training-only hard-concrete gates are not exported)")
            cfg["prune"] = False
    inferred = infer_layer_shapes(state_dict, cfg) if state_dict is not None else None
    defaults = _dense_defaults(cfg)
    for field in PRUNING_FIELDS:
        value = cfg.get(field)
        if value is None:
            source = "weights" if inferred is not None else "dense defaults"
            cfg[field] = (inferred or defaults)[field]
            notes.append(f"{field}: missing, filled from {source}")
            continue
        value = list(value)
        if len(value) != n_layers:
            if inferred is None:
                raise InputError(
                    f"{field} has {len(value)} entries but num_hidden_layers is {n_layers}, and no "
                    f"weights are at hand to resolve it; give one entry per layer"
                )
            if len(value) < n_layers:
                notes.append(f"{field}: {len(value)} entries for {n_layers} layers, taken from the weights")
            else:
                notes.append(
                    f"{field}: {len(value)} entries for {n_layers} layers, "
                    f"the {len(value) - n_layers} past the last layer dropped"
                )
            # the given entries go on to the check against the weights below, like a full list's
            value = value[:n_layers] + list(inferred[field][len(value) :])
        cfg[field] = value

    for i in range(n_layers):
        notes += _agree_absent_blocks(cfg, i)

    if inferred is not None:
        for field in PRUNING_FIELDS:
            for i, (want, got) in enumerate(zip(cfg[field], inferred[field])):
                if got is not None and _as_list(want) != _as_list(got):
                    raise InputError(
                        f"{field}[{i}] is {want} in the config but the weights say {got}; "
                        f"fix the config (or the override JSON) for layer {i}"
                    )
    return cfg, notes


def _agree_absent_blocks(cfg: dict[str, Any], i: int) -> list[str]:
    """Make layer ``i``'s absent blocks and zero widths agree in ``cfg`` (in place); one note per change."""
    notes: list[str] = []
    if cfg["use_attention"][i] and cfg["num_attention_heads_group"][i] == 0:
        cfg["use_attention"][i] = False
        notes.append(f"use_attention[{i}]: 0 heads -> false")
    if not cfg["use_attention"][i] and cfg["num_attention_heads_group"][i] != 0:
        notes.append(f"num_attention_heads_group[{i}]: {cfg['num_attention_heads_group'][i]} -> 0 (no attention)")
        cfg["num_attention_heads_group"][i] = 0
    widths, used = list(cfg["intermediate_size_group"][i]), list(cfg["use_feed_forward"][i])
    for j in range(2):
        if used[j] and widths[j] == 0:
            used[j] = False
            notes.append(f"use_feed_forward[{i}][{j}]: width 0 -> false")
        if not used[j] and widths[j] != 0:
            notes.append(f"intermediate_size_group[{i}][{j}]: {widths[j]} -> 0 (no feed-forward)")
            widths[j] = 0
    cfg["intermediate_size_group"][i], cfg["use_feed_forward"][i] = widths, used
    conv_in = cfg["conv_group"][i][0]
    if conv_in != cfg["hidden_size"]:
        raise InputError(
            f"conv_group[{i}] has in_channels {conv_in} but hidden_size is {cfg['hidden_size']}; "
            f"the conformer convolution's input and output must be hidden_size wide"
        )
    return notes


def _as_list(x: Any) -> Any:
    return list(x) if isinstance(x, (list, tuple)) else x
