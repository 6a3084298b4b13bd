#!/usr/bin/env python
"""Write ``tests/data/golden_slice.json``: absolute reference values that ``tests/test_golden.py`` checks.

Every other parity check in w2vlab is relative (artifact vs eager), so a torch or transformers
upgrade that moves both sides together passes unnoticed.  This stores, for the committed
fixture ``speech_en_m3_2s.wav`` and a tiny model with numpy-seeded weights:

* the HF ``SeamlessM4TFeatureExtractor`` ``input_features`` shape and 8 values at fixed
  (row, column) indices, and the same indices from ``w2vlab._features.TorchFeatureExtractor``;
* the eager embedding: shape, first 8 values, L2 norm;
* on ``speech_en_m3_1p01s.wav`` (99 frames of 10 ms: an odd count, so the extractor's last stacked
  row is half padding), the embedding with each pooling choice: "toolkit" (every row pooled; checked
  here against a restatement that runs HF's own ``Wav2Vec2BertModel`` forward with the extractor's
  mask, as WeSpeaker does) and "masked" (the half row left out).

The weights come from ``numpy.random.default_rng`` (:func:`seed_weights`), not from torch's init
functions, whose random streams may change between torch versions.  Deterministic: two runs
with the same library versions write identical files.

Usage: ``.venv_w2vbert_notebook/bin/python scripts/make_golden_slice.py``
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "speech_en_m3_2s.wav"
ODD_FIXTURE = ROOT / "tests" / "data" / "speech_en_m3_1p01s.wav"  # 16160 samples: 99 frames
GOLDEN = ROOT / "tests" / "data" / "golden_slice.json"
SEED = 0
NUM_VALUES = 8  # feature values and leading embedding values stored
FRONTEND_ATOL = 1e-4  # w2vlab's torch frontend vs HF, whole feature tensor


def seed_weights(model: torch.nn.Module, seed: int = SEED) -> torch.nn.Module:
    """Overwrite every floating tensor of ``model``'s state_dict from ``numpy.random.default_rng(seed)``.

    Keys are visited in sorted order.  Matrices / conv kernels (dim >= 2): normal / sqrt(fan_in),
    fan_in = prod(shape[1:]), so activations and the embedding stay O(1); 1-D ``*.weight``
    (LayerNorm / BatchNorm scales): 1 + 0.02 normal; other 1-D (biases): 0.02 normal;
    BatchNorm ``running_mean`` uniform(-0.1, 0.1) and ``running_var`` uniform(0.5, 1.5) (the
    ranges ``build_demo_model`` uses, redrawn because it draws them with torch's RNG).
    Integer buffers (``num_batches_tracked``) are kept.  Returns ``model`` (in place, eval).
    """
    rng = np.random.default_rng(seed)
    state = model.state_dict()
    for key in sorted(state):
        shape = tuple(state[key].shape)
        if not state[key].is_floating_point():
            continue
        if key.endswith("running_mean"):
            value = rng.uniform(-0.1, 0.1, shape)
        elif key.endswith("running_var"):
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) >= 2:
            value = rng.standard_normal(shape) / math.sqrt(math.prod(shape[1:]))
        elif key.endswith("weight"):
            value = 1.0 + 0.02 * rng.standard_normal(shape)
        else:
            value = 0.02 * rng.standard_normal(shape)
        state[key] = torch.from_numpy(value.astype(np.float32))
    model.load_state_dict(state, strict=True)
    return model.eval()


def write_golden_checkpoint(out_dir: str | Path, seed: int = SEED) -> Path:
    """The tiny demo checkpoint layout in ``out_dir`` (must not exist), weights from :func:`seed_weights`.

    ``write_demo_checkpoint`` writes the layout (config.json, preprocessor_config.json, head
    JSON, both safetensors files); the two weight files are then rewritten the same way.
    """
    from w2vlab.model._checkpoint import HEAD_WEIGHTS
    from w2vlab.model._demo import build_demo_model, write_demo_checkpoint

    out_dir = write_demo_checkpoint(out_dir, "tiny", seed=seed)
    model, _ = build_demo_model("tiny", seed=seed)
    state = {k: v.contiguous() for k, v in seed_weights(model, seed).state_dict().items()}
    enc = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    head = {k: v for k, v in state.items() if not k.startswith("encoder.")}
    save_file(enc, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    save_file(head, str(out_dir / HEAD_WEIGHTS), metadata={"format": "pt"})
    return out_dir


def feature_index(rows: int, cols: int, n: int = NUM_VALUES) -> list[list[int]]:
    """``n`` (row, column) pairs spread over a [rows, cols] feature map, first to last of each."""
    r = np.linspace(0, rows - 1, n).round().astype(int)
    c = np.linspace(0, cols - 1, n).round().astype(int)
    return [[int(i), int(j)] for i, j in zip(r, c)]


def measure(
    model_dir: str | Path, fixture: str | Path = FIXTURE, index: list[list[int]] | None = None
) -> dict[str, Any]:
    """The golden values of the checkpoint at ``model_dir`` on ``fixture``.

    Returns a dict: ``hf_features`` (``shape`` [1, T, 160], ``valid_rows``, ``index`` [[row, col]] * 8,
    ``values`` [8]), ``torch_features`` (``shape``, ``values`` [8] at the same index,
    ``max_abs_diff_vs_hf`` over the whole map), ``embedding`` (``shape`` [1, D], ``first`` [8],
    ``l2_norm``, and the sanity facts ``all_finite`` / ``spread`` = max - min, not stored).
    ``index`` defaults to :func:`feature_index`.
    """
    from transformers import SeamlessM4TFeatureExtractor

    from w2vlab._audio import prepare_waveform, read_audio
    from w2vlab._features import FeatureConfig, TorchFeatureExtractor
    from w2vlab.model._checkpoint import load_speaker_encoder
    from w2vlab.model._demo import W2VBERT_PREPROCESSOR

    loaded = load_speaker_encoder(model_dir)
    fe = SeamlessM4TFeatureExtractor(**(loaded.preprocessor_config or W2VBERT_PREPROCESSOR))
    wave, sr = read_audio(fixture)
    wave = prepare_waveform(wave, sr, fe.sampling_rate)  # [N] float32, 16 kHz
    out = fe([wave], sampling_rate=fe.sampling_rate, padding=True, return_attention_mask=True, return_tensors="pt")
    hf_full = out["input_features"]  # [1, T, 160]
    feats = hf_full[:, out["attention_mask"][0].bool()]  # [1, T_valid, 160]: one clip's model input, no mask
    with torch.inference_mode():
        ours, _ = TorchFeatureExtractor(FeatureConfig.from_extractor(fe))(torch.from_numpy(wave)[None])  # [1, T, 160]
        emb = loaded.model(feats)  # [1, D]
    index = index or feature_index(*hf_full.shape[1:])

    def pick(x: torch.Tensor) -> list[float]:
        return [float(x[0, i, j]) for i, j in index]

    return {
        "hf_features": {
            "shape": list(hf_full.shape),
            "valid_rows": feats.shape[1],
            "index": index,
            "values": pick(hf_full),
        },
        "torch_features": {
            "shape": list(ours.shape),
            "values": pick(ours),  # at hf_features' index
            "max_abs_diff_vs_hf": float((ours - hf_full).abs().max()) if ours.shape == hf_full.shape else math.inf,
        },
        "embedding": {
            "shape": list(emb.shape),
            "first": [float(v) for v in emb[0, :NUM_VALUES]],
            "l2_norm": float(emb.norm()),
            "all_finite": bool(torch.isfinite(emb).all()),
            "spread": float(emb.max() - emb.min()),
        },
    }


def restated_toolkit_embedding(model: torch.nn.Module, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """WeSpeaker's ``W2VBert_Adapter_MFA`` computation, restated on ``model``'s weights: HF's own encoder
    forward with the extractor's mask, every hidden state -> adapters -> unmasked ASP -> bottleneck."""
    with torch.inference_mode():
        states = model.encoder(feats, attention_mask=mask, output_hidden_states=True).hidden_states
        states = states[-len(model.adapter_layers) :]
        x = torch.cat([a(h) for a, h in zip(model.adapter_layers, states)], dim=-1).transpose(1, 2)  # (1, F, T)
        w = torch.softmax(model.pooling.attention(x), dim=2)
        mu = (x * w).sum(dim=2)
        sg = ((x * x * w).sum(dim=2) - mu * mu).clamp(min=1e-5).sqrt()
        return model.bottleneck(torch.cat([mu, sg], dim=1))  # (1, D)


def measure_odd(model_dir: str | Path, fixture: str | Path = ODD_FIXTURE) -> dict[str, Any]:
    """The embedding of an odd-frame-count clip with each pooling choice (``first`` [8], ``l2_norm``),
    and ``restated_rel_diff``: max|w2vlab toolkit - restated| / max|restated| (not stored)."""
    from transformers import SeamlessM4TFeatureExtractor

    from w2vlab._audio import prepare_waveform, read_audio
    from w2vlab.model._checkpoint import load_speaker_encoder
    from w2vlab.model._demo import W2VBERT_PREPROCESSOR

    result: dict[str, Any] = {"fixture": f"tests/data/{Path(fixture).name}"}
    for pooling in ("toolkit", "masked"):
        loaded = load_speaker_encoder(model_dir, pooling=pooling)
        fe = SeamlessM4TFeatureExtractor(**(loaded.preprocessor_config or W2VBERT_PREPROCESSOR))
        wave, sr = read_audio(fixture)
        wave = prepare_waveform(wave, sr, fe.sampling_rate)
        out = fe([wave], sampling_rate=fe.sampling_rate, padding=True, return_attention_mask=True, return_tensors="pt")
        feats, mask = out["input_features"], out["attention_mask"]  # [1, T, 160], [1, T]: the clip as it comes
        with torch.inference_mode():
            emb = loaded.model(feats, mask)  # [1, D]
        result["shape"], result["valid_rows"] = list(feats.shape), int(mask.sum())
        result[pooling] = {"first": [float(v) for v in emb[0, :NUM_VALUES]], "l2_norm": float(emb.norm())}
        if pooling == "toolkit":
            restated = restated_toolkit_embedding(loaded.model, feats, mask)
            result["restated_rel_diff"] = float((emb - restated).abs().max() / restated.abs().max())
    return result


def versions() -> dict[str, str]:
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__}


def main() -> None:
    from w2vlab.model._checkpoint import sha256_file

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = write_golden_checkpoint(Path(tmp) / "tiny")
        values = measure(model_dir)
        odd = measure_odd(model_dir)
    assert odd["valid_rows"] == odd["shape"][1] - 1, f"{ODD_FIXTURE.name} has no half row: {odd}"
    assert odd["restated_rel_diff"] <= 1e-5, f"toolkit pooling differs from the restatement: {odd}"
    assert abs(odd["toolkit"]["l2_norm"] - odd["masked"]["l2_norm"]) > 1e-4, f"the half row changes nothing: {odd}"
    del odd["restated_rel_diff"]
    tf, emb = values["torch_features"], values["embedding"]
    assert tf["max_abs_diff_vs_hf"] <= FRONTEND_ATOL, (
        f"torch frontend differs from HF by {tf['max_abs_diff_vs_hf']:.3g}"
    )
    assert emb["all_finite"] and emb["l2_norm"] > 1e-2 and emb["spread"] > 1e-3, f"degenerate embedding: {emb}"
    tf["max_abs_diff_vs_hf"] = float(f"{tf['max_abs_diff_vs_hf']:.1e}")  # the bound matters, not the last bits
    for key in ("all_finite", "spread"):
        del emb[key]
    golden = {
        "about": "absolute reference values checked by tests/test_golden.py; see tests/data/README.md",
        "provenance": {
            "script": "scripts/make_golden_slice.py",
            "model": "w2vlab.model._demo tiny structure, weights from seed_weights(numpy.random.default_rng(seed))",
            "seed": SEED,
            "fixture": f"tests/data/{FIXTURE.name}",
            "fixture_sha256": sha256_file(FIXTURE),
            "odd_fixture_sha256": sha256_file(ODD_FIXTURE),
            "versions": versions(),
        },
        **values,
        "odd_clip": odd,
    }
    text = json.dumps(golden, indent=2)  # then one line per list of numbers
    GOLDEN.write_text(
        re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text) + "\n"
    )
    print(
        f"wrote {GOLDEN.relative_to(ROOT)}: features {values['hf_features']['shape']}, "
        f"embedding {emb['shape']} norm {emb['l2_norm']:.6f} (torch frontend vs HF {tf['max_abs_diff_vs_hf']:.1e})"
    )


if __name__ == "__main__":
    main()
