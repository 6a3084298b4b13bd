"""WeSpeaker's W2V-BERT checkpoints: ``config.yaml`` + ``avg_model.pt`` (or ``models/model_N.pt``).

The layout, as WeSpeaker's ``W2VBert_Adapter_MFA`` recipe writes it (a plain state dict):

* ``frontend.encoder.*`` -- the whole ``Wav2Vec2BertModel`` (w2vlab's ``encoder.*``), without
  ``masked_spec_embed`` (WeSpeaker removes that training-only vector); a stage-1 checkpoint
  holds peft LoRA keys ``frontend.encoder.base_model.model.<path>.linear_q.base_layer.*``,
  ``...lora_A.default.weight`` (r, in) and ``...lora_B.default.weight`` (out, r);
* ``adapter_layers.*``, ``pooling.attention.*``, ``bottleneck.*`` -- the head, named as in w2vlab;
* ``projection.*`` -- the ArcMargin training head, not part of the embedding: dropped;
* ``pooling.attention.2.num_batches_tracked`` may be a float (``average_model.py`` divides it).

The architecture comes from ``config.yaml``: ``model_args`` (``embed_dim``, ``adapter_dim``,
``n_mfa_layers``, ``pooling_func``, ``num_frontend_hidden_layers``) and
``dataset_args.w2vbert_args`` (``model_name``, ``model_config_file``, ``use_lora``,
``lora_config_args``).  This module only reads and maps; :mod:`w2vlab.model._checkpoint` loads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from w2vlab._contract import InputError
from w2vlab.model._config import HeadConfig

logger = logging.getLogger(__name__)

TOOLKIT = "wespeaker"
CONFIG_FILE = "config.yaml"
DEFAULT_CHECKPOINTS = ("avg_model.pt", "models/avg_model.pt")  # a model directory, an experiment directory
MODEL_CLASS = "W2VBert_Adapter_MFA"
HUB_ID = "facebook/w2v-bert-2.0"
# Copies of the public config.json / preprocessor_config.json of facebook/w2v-bert-2.0: no hub is reached.
BUNDLED = Path(__file__).resolve().parent / "data" / "w2v-bert-2.0"
ENCODER_PREFIX, DROPPED_PREFIX = "frontend.encoder.", "projection."
HEAD_PREFIXES = ("adapter_layers.", "pooling.attention.", "bottleneck.")
# WeSpeaker's create_lora_config defaults, used when lora_config_args leaves r or lora_alpha out.
LORA_DEFAULTS = {"r": 16, "lora_alpha": 32}


@dataclass(frozen=True)
class WeSpeakerConfig:
    """What w2vlab reads from a WeSpeaker ``config.yaml``."""

    head: HeadConfig
    num_frontend_hidden_layers: int
    feat_dim: int | None  # model_args.feat_dim, checked against hidden_size when given
    model_name: str  # dataset_args.w2vbert_args.model_name: a local HF folder or a hub id
    model_config_file: str | None  # a config JSON inside model_name (pruned students)
    use_lora: bool
    lora_r: int
    lora_alpha: float
    fields: dict[str, Any] = field(default_factory=dict)  # the config fields used, for the metadata

    @property
    def lora_scaling(self) -> float:
        """peft's LoRA scale ``lora_alpha / r`` (WeSpeaker's LoraConfig has no rsLoRA switch)."""
        return self.lora_alpha / self.lora_r


def is_wespeaker_dir(path: str | Path) -> bool:
    """Whether ``path`` is a WeSpeaker model or experiment directory (it holds ``config.yaml``)."""
    return Path(path).is_dir() and (Path(path) / CONFIG_FILE).is_file()


def default_checkpoint(model_dir: Path) -> Path:
    """``avg_model.pt`` of a model directory, else ``models/avg_model.pt`` of an experiment directory."""
    for name in DEFAULT_CHECKPOINTS:
        if (model_dir / name).is_file():
            return model_dir / name
    found = sorted(p.name for p in model_dir.iterdir())[:10]
    raise FileNotFoundError(
        f"{model_dir} has {CONFIG_FILE} but neither of {list(DEFAULT_CHECKPOINTS)} (found: {found}); "
        f"pass checkpoint=... (CLI --checkpoint), e.g. {model_dir}/models/model_10.pt"
    )


def _section(cfg: Mapping[str, Any], key: str, path: Path) -> Mapping[str, Any]:
    value = cfg.get(key)
    if not isinstance(value, Mapping):
        raise InputError(f"{path} has no {key} mapping (found {type(value).__name__}); is it a WeSpeaker config?")
    return value


def _head(model_args: Mapping[str, Any], path: Path) -> HeadConfig:
    pooling = model_args.get("pooling_func", "ASP")
    if pooling != "ASP":
        raise InputError(
            f"{path}: model_args.pooling_func is {pooling!r}; w2vlab's head implements only 'ASP' "
            f"(attentive statistics pooling)"
        )
    adapter_dim = int(model_args.get("adapter_dim", 128))
    try:
        return HeadConfig(
            n_mfa_layers=int(model_args.get("n_mfa_layers", -1)),
            adapter_dim=adapter_dim,
            attention_channels=adapter_dim,  # WeSpeaker's ASP takes hidden_dim=adapter_dim
            embedding_dim=int(model_args.get("embed_dim", 256)),
        )
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: model_args has a non-integer size ({e}); got {dict(model_args)}") from e


def read_config(path: str | Path) -> WeSpeakerConfig:
    """Parse a WeSpeaker ``config.yaml`` for the W2V-BERT adapter-MFA model; raise early on anything else."""
    import yaml  # the core dependency pyyaml

    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"could not read YAML from {path}: {e}") from e
    if not isinstance(cfg, Mapping):
        raise InputError(f"{path} holds a YAML {type(cfg).__name__}; expected a WeSpeaker config mapping")
    model = cfg.get("model")
    if not str(model).startswith(MODEL_CLASS):
        raise InputError(f"{path}: model is {model!r}; w2vlab reads WeSpeaker's {MODEL_CLASS} checkpoints only")
    model_args, dataset_args = _section(cfg, "model_args", path), _section(cfg, "dataset_args", path)
    frontend = dataset_args.get("frontend")
    if frontend != "w2vbert":
        raise InputError(f"{path}: dataset_args.frontend is {frontend!r}; expected 'w2vbert'")
    w2v = _section(dataset_args, "w2vbert_args", path)
    lora = dict(w2v.get("lora_config_args") or {})
    used_w2v = {k: w2v.get(k) for k in ("model_name", "model_config_file", "use_lora") if k in w2v}
    return WeSpeakerConfig(
        head=_head(model_args, path),
        num_frontend_hidden_layers=int(model_args.get("num_frontend_hidden_layers", 24)),
        feat_dim=None if model_args.get("feat_dim") is None else int(model_args["feat_dim"]),
        model_name=str(w2v.get("model_name", HUB_ID)),
        model_config_file=w2v.get("model_config_file"),
        use_lora=bool(w2v.get("use_lora", False)),
        lora_r=int(lora.get("r", LORA_DEFAULTS["r"])),
        lora_alpha=float(lora.get("lora_alpha", LORA_DEFAULTS["lora_alpha"])),
        fields={
            "model": model,
            "model_args": {k: v for k, v in model_args.items() if k != "dropout"},
            "dataset_args.w2vbert_args": {**_public_names(used_w2v), "lora_config_args": lora or None},
        },
    )


def _public_names(w2v: Mapping[str, Any]) -> dict[str, Any]:
    """``model_name`` without the directories above it: the metadata carries no local paths."""
    out = dict(w2v)
    if "model_name" in out and out["model_name"] != HUB_ID:
        out["model_name"] = Path(str(out["model_name"])).name
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"could not read JSON from {path}: {e}") from e


def _local_folder(model_name: str, config_dir: Path) -> Path | None:
    """``model_name`` as a folder: as given (absolute, or relative to the working directory), else
    relative to the directory of ``config.yaml``."""
    for candidate in (Path(model_name).expanduser(), config_dir / model_name):
        if candidate.is_dir():
            return candidate
    return None


def resolve_encoder(
    ws: WeSpeakerConfig, config_dir: Path, has_override: bool
) -> tuple[dict[str, Any], dict[str, Any] | None, list[str]]:
    """The encoder's base HF config, its preprocessor config (or None) and notes, from ``model_name``.

    A local folder gives ``config.json`` (or ``model_config_file`` inside it, as WeSpeaker reads it)
    and ``preprocessor_config.json``; the hub id ``facebook/w2v-bert-2.0`` gives the copies bundled
    with w2vlab.  Any other name is an error unless ``has_override`` (the caller's full config).
    """
    folder = _local_folder(ws.model_name, config_dir)
    if folder is None and ws.model_name == HUB_ID:
        notes = [f"encoder config: w2vlab's bundled copy of {HUB_ID}'s config.json (no hub reached)"]
        return _read_json(BUNDLED / "config.json"), _read_json(BUNDLED / "preprocessor_config.json"), notes
    if folder is None:
        if has_override:
            return {}, None, [f"encoder config: the config passed in (model_name {ws.model_name!r} is not a folder)"]
        raise InputError(
            f"{CONFIG_FILE} names the encoder {ws.model_name!r} (dataset_args.w2vbert_args.model_name), which is "
            f"neither a local folder nor {HUB_ID!r}, and w2vlab never reaches a hub; pass its config.json as "
            f"config=... (CLI --config), or point model_name at a local HF folder"
        )
    config_file = folder / "config.json"
    if ws.model_config_file:
        if (folder / ws.model_config_file).is_file():
            config_file = folder / ws.model_config_file
        else:  # WeSpeaker falls back to the folder's config.json the same way
            logger.warning("%s has no %s; using its config.json as WeSpeaker does", folder, ws.model_config_file)
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder} (model_name in {CONFIG_FILE}) has no {config_file.name}")
    pre = folder / "preprocessor_config.json"
    notes = [f"encoder config: {config_file.name} of the local folder {folder.name}"]
    return _read_json(config_file), _read_json(pre) if pre.is_file() else None, notes


def _lora_keys(state: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in state if ".lora_A." in k or ".lora_B." in k)


def map_state(state: Mapping[str, torch.Tensor], ws: WeSpeakerConfig) -> tuple[dict[str, torch.Tensor], list[str]]:
    """WeSpeaker key names -> w2vlab's (``encoder.*`` and the head); LoRA pairs stay unmerged.

    ``projection.*`` is dropped and a float ``num_batches_tracked`` made an integer.  Keys under
    no known prefix, and LoRA pairs a config without ``use_lora`` cannot scale, raise here.
    """
    unknown = sorted(k for k in state if not k.startswith((ENCODER_PREFIX, DROPPED_PREFIX, *HEAD_PREFIXES)))
    if unknown:
        raise InputError(
            f"the WeSpeaker checkpoint has {len(unknown)} unexpected keys {unknown[:10]}; expected only "
            f"{ENCODER_PREFIX}*, {', '.join(p + '*' for p in HEAD_PREFIXES)} and {DROPPED_PREFIX}*"
        )
    lora = _lora_keys(state)
    if lora and not ws.use_lora:
        raise InputError(
            f"the checkpoint holds {len(lora)} LoRA tensors (e.g. {lora[0]}) but {CONFIG_FILE} has no "
            f"dataset_args.w2vbert_args.use_lora: true, so their scale alpha / r is unknown; "
            f"use the config.yaml the checkpoint was trained with"
        )
    dropped = sorted(k for k in state if k.startswith(DROPPED_PREFIX))
    notes = (
        [f"dropped the training head {dropped} (ArcMargin projection, not part of the embedding)"] if dropped else []
    )
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(DROPPED_PREFIX):
            continue
        if key.endswith("num_batches_tracked") and value.is_floating_point():
            value = value.round().long()
        out["encoder." + key[len(ENCODER_PREFIX) :] if key.startswith(ENCODER_PREFIX) else key] = value
    return out, notes


def check_encoder(ws: WeSpeakerConfig, encoder_config: Mapping[str, Any]) -> None:
    """``num_frontend_hidden_layers`` and ``feat_dim`` of ``config.yaml`` against the encoder config."""
    layers, hidden = encoder_config.get("num_hidden_layers"), encoder_config.get("hidden_size")
    if ws.num_frontend_hidden_layers != layers:
        raise InputError(
            f"{CONFIG_FILE} has model_args.num_frontend_hidden_layers={ws.num_frontend_hidden_layers} but the "
            f"encoder config has num_hidden_layers={layers}; they must agree"
        )
    if ws.feat_dim is not None and ws.feat_dim != hidden:
        raise InputError(
            f"{CONFIG_FILE} has model_args.feat_dim={ws.feat_dim} but the encoder config has hidden_size={hidden}"
        )


def source_record(ws: WeSpeakerConfig, config_sha256: str, checkpoint: Path, checkpoint_sha256: str) -> dict:
    """Where the weights came from, for the metadata and the model card (file names, no paths)."""
    return {
        "toolkit": TOOLKIT,
        "config_file": CONFIG_FILE,
        "config_sha256": config_sha256,
        "config": ws.fields,
        "checkpoint": checkpoint.name,
        "checkpoint_sha256": checkpoint_sha256,
    }
