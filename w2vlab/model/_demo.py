"""The built-in demo checkpoint: deterministic random weights in the real on-disk layout.

No real weights can be downloaded here, so every demo, test and benchmark starts from one of
these: ``tiny`` (tests, seconds), ``small``, ``full`` (the real w2v-bert-2.0 shape, ~580M
parameters, for benchmarks), each optionally as a pruned student with uneven per-layer widths
and at least one layer without attention.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from w2vlab._atomic import atomic_directory
from w2vlab._contract import ArtifactError, InputError
from w2vlab.model._checkpoint import HEAD_CONFIG, HEAD_WEIGHTS
from w2vlab.model._config import W2VBERT_PREPROCESSOR, HeadConfig, normalise_pruning
from w2vlab.model._encoder import SpeakerEncoder, build_encoder, count_parameters

logger = logging.getLogger(__name__)

# The encoder fields every size shares with w2v-bert-2.0 (conformer, relative_key positions).
_COMMON = {
    "feature_projection_input_dim": 160,
    "position_embeddings_type": "relative_key",
    "left_max_position_embeddings": 64,
    "right_max_position_embeddings": 8,
    "conv_depthwise_kernel_size": 31,
    "hidden_act": "swish",
    "layer_norm_eps": 1e-5,
    "add_adapter": False,
    "mask_time_prob": 0.0,
    "architectures": ["Wav2Vec2BertModel"],
}
SIZES: dict[str, tuple[dict[str, Any], HeadConfig]] = {
    "tiny": (
        dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
        HeadConfig(adapter_dim=16, attention_channels=16, embedding_dim=32),
    ),
    "small": (
        dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=1024),
        HeadConfig(adapter_dim=64, attention_channels=64, embedding_dim=128),
    ),
    "full": (
        dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
        HeadConfig(),
    ),
}
# The trained demo (scripts/train_demo_speaker.py): a small model that tells espeak-ng voices apart.
TRAINED_DIR = Path(__file__).resolve().parent / "data" / "demo_trained"
PRUNED_BASE = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128)


def encoder_config(size: str = "tiny", pruned: bool = False) -> dict[str, Any]:
    """The HF config dict of a demo encoder (pruned: per-layer fields, layer 1 without attention)."""
    if size not in SIZES:
        raise InputError(f"unknown demo size {size!r}; expected one of {sorted(SIZES)}")
    cfg = {**_COMMON, **(PRUNED_BASE if pruned and size == "tiny" else SIZES[size][0])}
    if pruned:
        n, heads, width, hidden = (
            cfg[k] for k in ("num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_size")
        )
        cfg["num_attention_heads_group"] = [0 if i == 1 else max(1, heads - i) for i in range(n)]
        cfg["use_attention"] = [i != 1 for i in range(n)]
        cfg["intermediate_size_group"] = [[width - 16 * i, 0 if i == 2 else width // 2 + 8 * i] for i in range(n)]
        cfg["use_feed_forward"] = [[True, i != 2] for i in range(n)]
        cfg["conv_group"] = [[hidden, hidden - 8 * (i % 3)] for i in range(n)]
    return cfg


def build_demo_model(size: str = "tiny", pruned: bool = False, seed: int = 0) -> tuple[SpeakerEncoder, dict[str, Any]]:
    """A deterministic random-weight speaker encoder and its normalised encoder config."""
    cfg, _ = normalise_pruning(encoder_config(size, pruned))
    torch.manual_seed(seed)
    model = SpeakerEncoder(build_encoder(cfg), SIZES[size][1])
    with torch.no_grad():  # give BatchNorm non-trivial running statistics, as a trained model has
        bn = model.pooling.attention[2]
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    return model.eval(), cfg


def save_checkpoint(model: SpeakerEncoder, cfg: dict[str, Any], out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write ``model`` as a checkpoint folder, atomically: ``config.json`` (``cfg``), ``model.safetensors``
    (the encoder), ``speaker_head.safetensors`` + ``speaker_head.json`` (the head), ``preprocessor_config.json``."""
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with atomic_directory(out_dir, overwrite) as tmp:
        save_file(
            {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")},
            str(tmp / "model.safetensors"),
            metadata={"format": "pt"},
        )
        save_file(
            {k: v for k, v in state.items() if not k.startswith("encoder.")},
            str(tmp / HEAD_WEIGHTS),
            metadata={"format": "pt"},
        )
        (tmp / "config.json").write_text(json.dumps({**cfg, "model_type": "wav2vec2-bert"}, indent=2) + "\n")
        (tmp / "preprocessor_config.json").write_text(json.dumps(W2VBERT_PREPROCESSOR, indent=2) + "\n")
        model.head.save(tmp / HEAD_CONFIG)
    return Path(out_dir)


def write_demo_checkpoint(
    out_dir: str | Path, size: str = "tiny", pruned: bool = False, seed: int = 0, overwrite: bool = False
) -> Path:
    """Write ``config.json``, ``model.safetensors``, ``preprocessor_config.json``,
    ``speaker_head.safetensors`` and ``speaker_head.json`` into ``out_dir`` (atomically)."""
    model, cfg = build_demo_model(size, pruned, seed)
    save_checkpoint(model, cfg, out_dir, overwrite)
    logger.info(
        "demo checkpoint %s%s (seed %d, %d parameters) -> %s",
        "pruned " if pruned else "",
        size,
        seed,
        count_parameters(model),
        out_dir,
    )
    return Path(out_dir)


def write_trained_checkpoint(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Copy the packaged trained demo (:data:`TRAINED_DIR`: weights, configs, card ``README.md``,
    ``training.json``) into ``out_dir``, atomically; an existing ``out_dir`` is replaced only with ``overwrite``."""
    files = sorted(p for p in TRAINED_DIR.iterdir() if p.is_file()) if TRAINED_DIR.is_dir() else []
    if not any(p.name == "model.safetensors" for p in files):
        raise ArtifactError(f"the trained demo checkpoint is missing from {TRAINED_DIR}; reinstall w2vlab")
    with atomic_directory(out_dir, overwrite) as tmp:
        for p in files:
            shutil.copyfile(p, tmp / p.name)
    logger.info("trained demo checkpoint -> %s", out_dir)
    return Path(out_dir)
