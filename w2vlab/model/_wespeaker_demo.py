"""A WeSpeaker-layout model directory made from a demo model: what WeSpeaker's recipe writes, for trying the
import path (``w2vlab export --model-path DIR``) without a WeSpeaker checkpoint at hand.

Layout written (read back by :mod:`w2vlab.model._wespeaker`):

* ``encoder/`` -- the local HF folder ``config.yaml`` names as ``model_name``: ``config.json`` and
  ``preprocessor_config.json``, no weights (WeSpeaker keeps the fine-tuned encoder in its checkpoint);
* ``config.yaml`` -- ``model: W2VBert_Adapter_MFA``, ``model_args``, ``dataset_args.w2vbert_args``;
* ``avg_model.pt`` -- a plain state dict: ``frontend.encoder.*`` without ``masked_spec_embed``, the head,
  an ArcMargin ``projection.weight`` and a float ``num_batches_tracked`` (``average_model.py`` divides it);
  a stage-1 checkpoint (``lora_rank > 0``) holds peft LoRA pairs on every ``linear_q`` / ``linear_v``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from w2vlab._atomic import atomic_directory
from w2vlab.model._config import W2VBERT_PREPROCESSOR
from w2vlab.model._demo import build_demo_model
from w2vlab.model._encoder import SpeakerEncoder
from w2vlab.model._wespeaker import CONFIG_FILE, MODEL_CLASS

logger = logging.getLogger(__name__)

LORA_TARGETS = ("linear_q", "linear_v")  # the attention projections WeSpeaker's stage-1 recipe adapts
SPEAKERS = 17  # rows of the (dropped) ArcMargin projection


def wespeaker_state(model: SpeakerEncoder, lora_rank: int = 0, seed: int = 0) -> dict[str, torch.Tensor]:
    """``model``'s weights under WeSpeaker's names.  ``lora_rank > 0``: a stage-1 state whose LoRA pairs
    (random, scale ``2``: alpha ``2 * r``) merge into ``model``'s weights, so the pair and ``model`` agree."""
    g = torch.Generator().manual_seed(seed)
    prefix = "frontend.encoder.base_model.model." if lora_rank else "frontend.encoder."
    state: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key == "encoder.masked_spec_embed":
            continue  # W2VBertFrontend deletes it before training
        if not key.startswith("encoder."):
            state[key] = value.clone()
            continue
        name = key[len("encoder.") :]
        module, leaf = name.rsplit(".", 1)
        if lora_rank and module.rsplit(".", 1)[-1] in LORA_TARGETS:
            a = torch.randn(lora_rank, value.shape[1], generator=g) * 0.1 if leaf == "weight" else None  # (r, in)
            if a is not None:
                b = torch.randn(value.shape[0], lora_rank, generator=g) * 0.1  # (out, r)
                state[f"{prefix}{module}.lora_A.default.weight"] = a
                state[f"{prefix}{module}.lora_B.default.weight"] = b
                value = value - 2.0 * b @ a  # base weight + scale * B @ A == the model's weight
            name = f"{module}.base_layer.{leaf}"
        state[prefix + name] = value.clone()
    bn = "pooling.attention.2.num_batches_tracked"
    state[bn] = state[bn].float()
    state["projection.weight"] = torch.randn(SPEAKERS, model.embedding_dim, generator=g)
    return state


def _config_yaml(model: SpeakerEncoder, lora_rank: int) -> dict:
    head = model.head
    w2v = {"model_name": "encoder", "frozen": bool(lora_rank), "use_lora": bool(lora_rank)}
    if lora_rank:
        w2v["lora_config_args"] = {"r": lora_rank, "lora_alpha": 2 * lora_rank, "target_modules": list(LORA_TARGETS)}
    args = {
        "feat_dim": model.encoder.config.hidden_size,
        "embed_dim": head.embedding_dim,
        "adapter_dim": head.adapter_dim,
        "n_mfa_layers": head.n_mfa_layers,
        "pooling_func": "ASP",
        "num_frontend_hidden_layers": model.encoder.config.num_hidden_layers,
        "dropout": 0.0,
    }
    return {
        "model": MODEL_CLASS,
        "model_args": args,
        "dataset_args": {"frontend": "w2vbert", "resample_rate": 16000, "w2vbert_args": w2v},
        "projection_args": {"project_type": "arc_margin", "scale": 32.0, "margin": 0.2},
    }


def write_wespeaker_demo(
    out_dir: str | Path, size: str = "tiny", seed: int = 0, lora_rank: int = 0, overwrite: bool = False
) -> tuple[Path, SpeakerEncoder]:
    """Write the demo model of ``size`` (its ``attention_channels`` equal to ``adapter_dim``, as WeSpeaker's
    ASP has them) as a WeSpeaker model directory; returns (the directory, the eager model it holds)."""
    import yaml

    model, cfg = build_demo_model(size, seed=seed)
    if model.head.attention_channels != model.head.adapter_dim:
        raise ValueError(f"demo {size!r}: WeSpeaker's ASP needs attention_channels == adapter_dim; got {model.head}")
    with atomic_directory(out_dir, overwrite) as tmp:
        (tmp / "encoder").mkdir()
        (tmp / "encoder" / "config.json").write_text(json.dumps({**cfg, "model_type": "wav2vec2-bert"}, indent=2))
        (tmp / "encoder" / "preprocessor_config.json").write_text(json.dumps(W2VBERT_PREPROCESSOR, indent=2))
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(_config_yaml(model, lora_rank), sort_keys=False))
        torch.save(wespeaker_state(model, lora_rank, seed), tmp / "avg_model.pt")
    logger.info(
        "WeSpeaker-layout %s demo%s -> %s", size, f" (stage-1 LoRA r={lora_rank})" if lora_rank else "", out_dir
    )
    return Path(out_dir), model
