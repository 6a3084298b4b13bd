"""Checkpoints: demo round trips, the reference .pth layout, strictness, LoRA, pruning configs."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from w2vlab.model._checkpoint import CheckpointMismatchError, load_speaker_encoder, read_state_dict
from w2vlab.model._config import normalise_pruning
from w2vlab.model._demo import build_demo_model, encoder_config, write_demo_checkpoint

X = torch.randn(2, 23, 160)


def _embed(model):
    with torch.no_grad():
        return model(X)


@pytest.mark.parametrize("pruned", [False, True])
def test_demo_checkpoint_round_trips_strictly(tmp_path, pruned):
    out = write_demo_checkpoint(tmp_path / "demo", pruned=pruned, seed=5)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "speaker_head.json",
        "speaker_head.safetensors",
    ]
    loaded = load_speaker_encoder(out)
    reference, cfg = build_demo_model(pruned=pruned, seed=5)
    assert torch.equal(_embed(loaded.model), _embed(reference))
    assert loaded.encoder_config["num_hidden_layers"] == cfg["num_hidden_layers"]
    assert set(loaded.source_sha256) == {"model.safetensors", "speaker_head.safetensors"}
    assert not loaded.model.training


def test_head_config_written_with_the_old_key_still_loads(tmp_path, tiny_dir):
    """speaker_head.json files written before embd_dim became embedding_dim load unchanged."""
    from w2vlab.model._config import HeadConfig

    old = tmp_path / "old"
    shutil.copytree(tiny_dir, old)
    saved = json.loads((old / "speaker_head.json").read_text())
    assert saved == {
        "n_mfa_layers": -1,
        "adapter_dim": 16,
        "attention_channels": 16,
        "embedding_dim": 32,
        "pooling": "masked",
    }
    saved["embd_dim"] = saved.pop("embedding_dim")  # the layout of earlier files
    del saved["pooling"]  # nor did they name a pooling: w2vlab's own head then pools masked
    (old / "speaker_head.json").write_text(json.dumps(saved))
    loaded = load_speaker_encoder(old)
    assert loaded.head == load_speaker_encoder(tiny_dir).head == HeadConfig(-1, 16, 16, 32)
    assert loaded.model.embedding_dim == 32
    saved["embd_dim"] = 31  # a file that contradicts the weights is still refused
    (old / "speaker_head.json").write_text(json.dumps(saved))
    with pytest.raises(CheckpointMismatchError, match="embedding_dim=31"):
        load_speaker_encoder(old)
    with pytest.raises(ValueError, match="embedding_dim=8 and its old name embd_dim=4"):
        HeadConfig.from_dict({"embedding_dim": 8, "embd_dim": 4})


def test_demo_checkpoint_is_deterministic_and_not_clobbered(tmp_path):
    a = write_demo_checkpoint(tmp_path / "a", seed=1)
    b = write_demo_checkpoint(tmp_path / "b", seed=1)
    for name in ("model.safetensors", "speaker_head.safetensors", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    before = (a / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="--force"):
        write_demo_checkpoint(a, seed=2)
    assert (a / "model.safetensors").read_bytes() == before
    write_demo_checkpoint(a, seed=2, overwrite=True)
    assert (a / "model.safetensors").read_bytes() != before


def test_reference_pth_layout_loads_with_weights_only(tmp_path, tiny_dir):
    """{"modules": {"spk_model": ...}} with front.encoder.* keys; the fine-tuned encoder wins."""
    finetuned, _ = build_demo_model(seed=7)
    state = {("front." + k if k.startswith("encoder.") else k): v for k, v in finetuned.state_dict().items()}
    torch.save({"modules": {"spk_model": state}}, tmp_path / "best_ckpt.pth")
    loaded = load_speaker_encoder(tiny_dir, tmp_path / "best_ckpt.pth")
    assert torch.equal(_embed(loaded.model), _embed(finetuned))


def test_pth_with_python_objects_is_refused_with_advice(tmp_path, tiny_dir):
    torch.save({"modules": {"spk_model": {}}, "args": argparse.Namespace(lr=1)}, tmp_path / "full.pth")
    with pytest.raises(ValueError, match=r"never unpickles.*safetensors"):
        load_speaker_encoder(tiny_dir, tmp_path / "full.pth")


def test_missing_unexpected_and_misshaped_keys_are_reported(tmp_path, tiny_dir):
    head = load_file(str(tiny_dir / "speaker_head.safetensors"))
    del head["bottleneck.bias"]
    head["pooling.extra.weight"] = torch.zeros(3)
    head["adapter_layers.0.0.bias"] = torch.zeros(99)
    save_file(head, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointMismatchError) as err:
        load_speaker_encoder(tiny_dir, tmp_path / "bad.safetensors")
    message = str(err.value)
    assert "missing (1)" in message and "bottleneck.bias" in message
    assert "unexpected (1)" in message and "pooling.extra.weight" in message
    assert "adapter_layers.0.0.bias: checkpoint (99,) vs model (16,)" in message
    loose = load_speaker_encoder(tiny_dir, tmp_path / "bad.safetensors", strict=False)
    assert any("non-strict" in note for note in loose.notes)


def test_lora_pairs_are_merged(tmp_path, tiny_dir):
    base, _ = build_demo_model()
    state = dict(base.state_dict())
    key = "encoder.encoder.layers.0.self_attn.linear_q"
    a, b = torch.randn(4, 32), torch.randn(32, 4)
    state[f"{key}.base_layer.weight"] = state.pop(f"{key}.weight")
    state[f"{key}.lora_A.default.weight"], state[f"{key}.lora_B.default.weight"] = a, b
    save_file(state, str(tmp_path / "lora.safetensors"))
    with pytest.warns(UserWarning, match="assuming the reference recipe"):
        loaded = load_speaker_encoder(tiny_dir, tmp_path / "lora.safetensors")
    merged = loaded.model.state_dict()[f"{key}.weight"]
    torch.testing.assert_close(merged, base.state_dict()[f"{key}.weight"] + 2.0 * b @ a)
    explicit = load_speaker_encoder(tiny_dir, tmp_path / "lora.safetensors", lora_scaling=0.5)
    torch.testing.assert_close(
        explicit.model.state_dict()[f"{key}.weight"], base.state_dict()[f"{key}.weight"] + 0.5 * b @ a
    )


def test_pruned_list_of_wrong_length_without_weights_names_field():
    cfg = encoder_config("tiny", pruned=True)
    cfg["intermediate_size_group"] = cfg["intermediate_size_group"][:2]
    with pytest.raises(ValueError, match=r"intermediate_size_group has 2 entries but num_hidden_layers is 4"):
        normalise_pruning(cfg)


def test_pruned_list_of_wrong_length_is_resolved_from_weights(tmp_path, pruned_dir):
    override = {"conv_group": [[64, 64]]}  # one entry for four layers
    (tmp_path / "override.json").write_text(json.dumps(override))
    loaded = load_speaker_encoder(pruned_dir, config=tmp_path / "override.json")
    assert loaded.encoder_config["conv_group"] == encoder_config("tiny", pruned=True)["conv_group"]
    assert any("conv_group: 1 entries for 4 layers, taken from the weights" in n for n in loaded.notes)


# The pruned demo's weights (w2vlab.model._demo.encoder_config): heads [4, 0, 2, 1], ffn widths
# [[128, 64], [112, 72], [96, 0], [80, 88]], conv [[64, 64], [64, 56], [64, 48], [64, 64]].
@pytest.mark.parametrize(
    "field, given, message",
    [
        (
            "num_attention_heads_group",
            [2, 0],
            r"num_attention_heads_group\[0\] is 2 in the config but the weights say 4; .* for layer 0",
        ),
        (
            "intermediate_size_group",
            [[128, 64], [112, 88]],
            r"intermediate_size_group\[1\] is \[112, 88\] in the config but the weights say \[112, 72\]",
        ),
        (
            "conv_group",
            [[64, 64], [64, 56], [64, 48], [64, 56], [64, 64]],
            r"conv_group\[3\] is \[64, 56\] in the config but the weights say \[64, 64\]",
        ),
    ],
    ids=["short_heads", "short_widths", "long_conv"],
)
def test_pruned_list_of_wrong_length_contradicting_weights_is_an_error(pruned_dir, field, given, message):
    """A given entry is never silently replaced by the weights' value, whatever the list's length."""
    with pytest.raises(ValueError, match=message):
        load_speaker_encoder(pruned_dir, config={field: given})


@pytest.mark.parametrize(
    "given, note",
    [
        ([4, 0, 2], "num_attention_heads_group: 3 entries for 4 layers, taken from the weights"),
        ([4, 0, 2, 1, 3], "num_attention_heads_group: 5 entries for 4 layers, the 1 past the last layer dropped"),
    ],
    ids=["short", "long"],
)
def test_pruned_list_of_wrong_length_agreeing_with_weights_is_completed(pruned_dir, given, note):
    loaded = load_speaker_encoder(pruned_dir, config={"num_attention_heads_group": given})
    assert loaded.encoder_config["num_attention_heads_group"] == [4, 0, 2, 1]
    assert any(note in n for n in loaded.notes), loaded.notes


def test_pruned_width_contradicting_weights_names_field_and_layer(tmp_path, pruned_dir):
    cfg = encoder_config("tiny", pruned=True)
    cfg["intermediate_size_group"][2][0] += 8
    with pytest.raises(
        ValueError, match=r"intermediate_size_group\[2\] is \[104, 0\] in the config but the weights say \[96, 0\]"
    ):
        load_speaker_encoder(pruned_dir, config={"intermediate_size_group": cfg["intermediate_size_group"]})


def test_pruned_config_normalisations_are_recorded():
    cfg = encoder_config("tiny", pruned=True)
    cfg["num_attention_heads_group"][1] = 3  # layer 1 has no attention: heads are irrelevant
    cfg["prune"] = True
    out, notes = normalise_pruning(cfg)
    assert out["num_attention_heads_group"][1] == 0 and out["prune"] is False
    assert "num_attention_heads_group[1]: 3 -> 0 (no attention)" in notes
    assert any(n.startswith("prune: true -> false") for n in notes)


def test_bad_model_paths(tmp_path, tiny_dir):
    with pytest.raises(FileNotFoundError, match="model path not found"):
        load_speaker_encoder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_speaker_encoder(tmp_path / "empty")
    no_head = tmp_path / "no_head"
    shutil.copytree(tiny_dir, no_head)
    (no_head / "speaker_head.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no speaker head"):
        load_speaker_encoder(no_head)
    with pytest.raises(ValueError, match="needs config="):
        load_speaker_encoder(tiny_dir / "model.safetensors", tiny_dir / "speaker_head.safetensors")


def test_bare_safetensors_plus_config(tiny_dir):
    loaded = load_speaker_encoder(
        tiny_dir / "model.safetensors", tiny_dir / "speaker_head.safetensors", config=tiny_dir / "config.json"
    )
    assert torch.equal(_embed(loaded.model), _embed(load_speaker_encoder(tiny_dir).model))


def test_read_state_dict_rejects_non_tensor_mapping(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        read_state_dict(tmp_path / "list.pt")
    (tmp_path / "junk.safetensors").write_text("not safetensors")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        read_state_dict(tmp_path / "junk.safetensors")


def test_read_safetensors_matches_the_reference_reader(tmp_path):
    from w2vlab.model._checkpoint import read_safetensors

    tensors = {
        "f32": torch.randn(3, 5),
        "f16": torch.randn(7).half(),
        "bf16": torch.randn(2, 2).bfloat16(),
        "i64": torch.arange(6).view(2, 3),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "u8": torch.arange(9, dtype=torch.uint8),
    }
    save_file(tensors, str(tmp_path / "t.safetensors"), metadata={"format": "pt"})
    ours, theirs = read_safetensors(tmp_path / "t.safetensors"), load_file(str(tmp_path / "t.safetensors"))
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert ours[name].dtype == theirs[name].dtype and torch.equal(ours[name], theirs[name]), name
        assert ours[name].numel() == 0 or ours[name].data_ptr() % 64 == 0, name  # own, aligned allocation
    data = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_safetensors(tmp_path / "cut.safetensors")
