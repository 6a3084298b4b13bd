"""The speaker encoder against stock HF: hidden states, masking, pruned students."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import SeamlessM4TFeatureExtractor

from w2vlab.export._suite import synthetic_speech
from w2vlab.model._config import PRUNING_FIELDS, W2VBERT_PREPROCESSOR, HeadConfig, normalise_pruning
from w2vlab.model._demo import build_demo_model, encoder_config
from w2vlab.model._encoder import SpeakerEncoder, build_encoder, count_parameters

FE = SeamlessM4TFeatureExtractor(**W2VBERT_PREPROCESSOR)


@pytest.mark.parametrize("pruned", [False, True])
def test_hidden_states_match_stock_hf_forward(pruned):
    model, _ = build_demo_model(pruned=pruned)
    x = torch.randn(2, 41, 160)
    mask = torch.ones(2, 41, dtype=torch.long)
    mask[1, 23:] = 0
    with torch.no_grad():
        ours = model.hidden_states(x, mask)
        ref = model.encoder(x, attention_mask=mask, output_hidden_states=True).hidden_states
    assert len(ours) == len(ref) == model.encoder.config.num_hidden_layers + 1
    for a, b in zip(ours, ref):  # padded rows are garbage in both; compare real frames
        torch.testing.assert_close(a[mask.bool()], b[mask.bool()], rtol=0, atol=1e-6)


@pytest.mark.parametrize("pruned", [False, True])
def test_padded_batch_equals_clips_alone(pruned):
    """Each clip with its own extractor mask; odd frame counts make the last row half padding."""
    model, _ = build_demo_model(pruned=pruned)
    lengths = [16160, 8000, 32037, 561]  # 16160: 99 frames (odd), 561: 2 frames
    waves = [synthetic_speech(n, seed=i) for i, n in enumerate(lengths)]
    batch = FE(waves, sampling_rate=16000, padding=True, return_attention_mask=True, return_tensors="pt")
    with torch.no_grad():
        together = model(batch["input_features"], batch["attention_mask"])
        for i, w in enumerate(waves):
            one = FE(w, sampling_rate=16000, return_attention_mask=True, return_tensors="pt")
            alone = model(one["input_features"], one["attention_mask"])
            assert (together[i] - alone[0]).abs().max() <= 1e-5, lengths[i]


def test_padded_frames_get_zero_pooling_weight():
    model, _ = build_demo_model()
    x = torch.randn(1, 30, 160)
    mask = torch.ones(1, 30, dtype=torch.long)
    mask[0, 20:] = 0
    noisy = x.clone()
    noisy[0, 20:] = 1e3 * torch.randn(10, 160)  # whatever sits in padding must not matter
    with torch.no_grad():
        assert torch.equal(model(x, mask), model(noisy, mask))
        torch.testing.assert_close(model(x, mask), model(x[:, :20]), rtol=0, atol=1e-6)


def test_odd_frame_count_unmasked_half_padded_row_changes_embedding():
    """The pitfall the consumer API avoids: running the extractor's half-padded last row."""
    model, _ = build_demo_model()
    out = FE(synthetic_speech(16160), sampling_rate=16000, return_attention_mask=True, return_tensors="pt")
    feats, mask = out["input_features"], out["attention_mask"]
    assert mask[0, -1] == 0  # 99 frames -> 50 stacked rows, the last one half padding
    with torch.no_grad():
        with_mask = model(feats, mask)
        valid_rows = model(feats[:, mask[0].bool()])
        all_rows = model(feats)
    torch.testing.assert_close(with_mask, valid_rows, rtol=0, atol=1e-6)
    assert (all_rows - with_mask).abs().max() > 1e-5


def test_pruned_student_layer_shapes():
    cfg, notes = normalise_pruning(encoder_config("tiny", pruned=True))
    model = SpeakerEncoder(build_encoder(cfg), HeadConfig(adapter_dim=8, attention_channels=8, embedding_dim=8))
    keys = model.state_dict()
    for i in range(len(model.encoder.encoder.layers)):
        p = f"encoder.encoder.layers.{i}."
        if cfg["use_attention"][i]:
            assert keys[p + "self_attn.linear_q.weight"].shape[0] == cfg["num_attention_heads_group"][i] * 16
        else:
            assert not any(k.startswith(p + "self_attn") for k in keys)
        for j, ffn in enumerate(("ffn1", "ffn2")):
            key = f"{p}{ffn}.intermediate_dense.weight"
            assert (keys[key].shape[0] if key in keys else 0) == cfg["intermediate_size_group"][i][j]
        assert keys[p + "conv_module.depthwise_conv.weight"].shape[0] == cfg["conv_group"][i][1]
    assert not all(cfg["use_attention"]) and notes == []
    widths = {tuple(w) for w in cfg["intermediate_size_group"]}
    assert len(widths) == cfg["num_hidden_layers"]  # uneven per layer


def test_pruning_fields_shrink_the_encoder():
    """The per-layer fields really remove weights: the pruned student against the dense encoder of the
    same base shape (the same config without the per-layer fields)."""
    head = HeadConfig(adapter_dim=8, attention_channels=8, embedding_dim=8)
    pruned_cfg, _ = normalise_pruning(encoder_config("tiny", pruned=True))
    dense_cfg = {k: v for k, v in pruned_cfg.items() if k not in PRUNING_FIELDS}
    pruned = SpeakerEncoder(build_encoder(pruned_cfg), head)
    dense = SpeakerEncoder(build_encoder(dense_cfg), head)
    assert count_parameters(torch.nn.Linear(3, 4)) == 3 * 4 + 4  # weights and bias, no buffers
    # FFN blocks alone: each kept one is Linear(h, w) + Linear(w, h) + LayerNorm(h); widths per layer
    h, i = dense_cfg["hidden_size"], dense_cfg["intermediate_size"]
    ffn_params = lambda w: 0 if w == 0 else (h * w + w) + (w * h + h) + 2 * h  # noqa: E731
    removed_ffn = sum(ffn_params(i) - ffn_params(w) for pair in pruned_cfg["intermediate_size_group"] for w in pair)
    assert removed_ffn > 0
    assert count_parameters(dense) - count_parameters(pruned) > removed_ffn  # attention and conv shrink too


def test_n_mfa_layers_out_of_range():
    with pytest.raises(ValueError, match="n_mfa_layers=9"):
        HeadConfig(n_mfa_layers=9).resolved_mfa_layers(num_hidden_layers=2)


def test_embedding_is_finite_and_deterministic():
    a, _ = build_demo_model(seed=3)
    b, _ = build_demo_model(seed=3)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 17, 160)).astype(np.float32))
    with torch.no_grad():
        ea, eb = a(x), b(x)
    assert torch.isfinite(ea).all() and torch.equal(ea, eb)
