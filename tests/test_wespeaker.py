"""WeSpeaker's W2V-BERT checkpoints: ``config.yaml`` + ``avg_model.pt``, full and stage-1 LoRA.

The tests write WeSpeaker-layout directories themselves from a tiny random model: a plain state
dict under WeSpeaker's key names (``frontend.encoder.*``, no ``masked_spec_embed``, a float
``num_batches_tracked``, an ArcMargin ``projection.weight``) beside a tiny local HF folder.  The
expected embeddings come from the model the test built, run the way WeSpeaker extracts: HF
extractor (``padding="longest"``), the HF encoder's ``output_hidden_states`` given the extractor's
mask, adapters, unmasked attentive statistics pooling, bottleneck.  Odd and even frame counts are
compared: for an odd count the extractor's last stacked row is half padding (mask 0), which the
encoder masks and WeSpeaker's pooling includes; a WeSpeaker checkpoint loads with toolkit pooling.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_golden import golden_script
from transformers import SeamlessM4TFeatureExtractor

from w2vlab._contract import InputError
from w2vlab.cli import main
from w2vlab.model._checkpoint import CheckpointMismatchError, load_speaker_encoder
from w2vlab.model._config import W2VBERT_PREPROCESSOR, HeadConfig
from w2vlab.model._demo import build_demo_model, encoder_config
from w2vlab.model._encoder import SpeakerEncoder, build_encoder, count_parameters

ROOT = Path(__file__).resolve().parents[1]
HEAD = HeadConfig(n_mfa_layers=-1, adapter_dim=16, attention_channels=16, embedding_dim=24)
LORA_R, LORA_ALPHA = 4, 6  # scale 1.5, unlike w2vlab's reference default of 2.0
EVEN = (16240, 24240)  # 100 and 150 frames of 10 ms: no padded half row in the stacked features
ODD = (16160, 24160)  # 99 and 149 frames: the last stacked row is half padding
NUM_CLASSES = 7


def _tiny_encoder_config() -> dict:
    # mask_time_prob > 0 gives the HF model a masked_spec_embed, which WeSpeaker deletes
    return {**encoder_config("tiny"), "mask_time_prob": 0.05, "model_type": "wav2vec2-bert"}


def _model(seed: int = 0) -> SpeakerEncoder:
    torch.manual_seed(seed)
    model = SpeakerEncoder(build_encoder(_tiny_encoder_config()), HEAD)
    with torch.no_grad():
        bn = model.pooling.attention[2]
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
        bn.num_batches_tracked.fill_(37)
    return model.eval()


def _yaml(model_name: str, *, lora: bool = False, **model_args) -> dict:
    """A config.yaml as WeSpeaker's train.py saves it (the fields w2vlab reads, and some it does not)."""
    w2v = {"model_name": model_name, "frozen": lora, "use_lora": lora, "lora_config_args": None}
    if lora:
        w2v["lora_config_args"] = {"r": LORA_R, "lora_alpha": LORA_ALPHA, "target_modules": ["linear_q", "linear_v"]}
    args = {"feat_dim": 32, "embed_dim": 24, "pooling_func": "ASP", "n_mfa_layers": -1, "adapter_dim": 16}
    args.update({"dropout": 0.0, "num_frontend_hidden_layers": 2, **model_args})
    return {
        "exp_dir": "exp/W2VBert_AdapterMFA_tiny",
        "model": "W2VBert_Adapter_MFA",
        "model_args": args,
        "dataset_args": {"frontend": "w2vbert", "resample_rate": 16000, "w2vbert_args": w2v},
        "projection_args": {"project_type": "arc_margin", "scale": 32.0, "margin": 0.2},
    }


def _wespeaker_state(model: SpeakerEncoder, lora: dict | None = None) -> dict[str, torch.Tensor]:
    """``model``'s weights under WeSpeaker's names; ``lora``: {module path: (A, B)} as peft stores them."""
    prefix = "frontend.encoder.base_model.model." if lora is not None else "frontend.encoder."
    state = {}
    for key, value in model.state_dict().items():
        if key == "encoder.masked_spec_embed":
            continue  # W2VBertFrontend deletes it before training
        if key.startswith("encoder."):
            name = key[len("encoder.") :]
            module = name.rsplit(".", 1)[0]
            if lora is not None and module in lora:
                name = f"{module}.base_layer.{name.rsplit('.', 1)[1]}"
            key = prefix + name
        state[key] = value.clone()
    for module, (a, b) in (lora or {}).items():
        state[f"{prefix}{module}.lora_A.default.weight"] = a
        state[f"{prefix}{module}.lora_B.default.weight"] = b
    state["pooling.attention.2.num_batches_tracked"] = torch.tensor(37.0)  # average_model.py's true_divide
    state["projection.weight"] = torch.randn(NUM_CLASSES, HEAD.embedding_dim)
    return state


def _write(root: Path, state: dict, config: dict, checkpoint: str = "avg_model.pt") -> Path:
    """A WeSpeaker model directory ``root/exp`` and the local HF folder ``root/w2v-bert-tiny``."""
    folder = root / "w2v-bert-tiny"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(_tiny_encoder_config()))
    (folder / "preprocessor_config.json").write_text(json.dumps(W2VBERT_PREPROCESSOR))
    exp = root / "exp"
    (exp / checkpoint).parent.mkdir(parents=True, exist_ok=True)
    (exp / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(state, exp / checkpoint)
    return exp


def _features(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """WeSpeaker's frontend call on one float clip in [-1, 1]: features [1, T, 160] and mask [1, T]."""
    wave = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
    fe = SeamlessM4TFeatureExtractor(**W2VBERT_PREPROCESSOR)
    out = fe([wave], return_tensors="pt", sampling_rate=16000, padding="longest")
    assert bool(out["attention_mask"][0, -1]) == (n in EVEN), f"{n} samples: the half row is not where expected"
    return out["input_features"], out["attention_mask"]


# W2VBert_Adapter_MFA's computation restated on HF's own encoder forward: one copy, shared with the golden slice
_wespeaker_embedding = golden_script.restated_toolkit_embedding


def _assert_matches(loaded, reference: SpeakerEncoder) -> None:
    assert loaded.head.pooling == "toolkit"
    for n in EVEN + ODD:
        feats, mask = _features(n)
        with torch.no_grad():
            got = loaded.model(feats, mask)
        want = _wespeaker_embedding(reference, feats, mask)
        rel = ((got - want).abs().max() / want.abs().max()).item()
        assert rel <= 1e-5, f"{n} samples: max|diff|/max|ref| {rel:.2e}"


@pytest.fixture(scope="module")
def full_dir(tmp_path_factory) -> tuple[Path, SpeakerEncoder]:
    model = _model(seed=3)
    root = tmp_path_factory.mktemp("wespeaker")
    return _write(root, _wespeaker_state(model), _yaml(str(root / "w2v-bert-tiny"))), model


def test_full_checkpoint_matches_wespeakers_computation(full_dir, caplog):
    exp, model = full_dir
    with caplog.at_level(logging.INFO, logger="w2vlab.model._checkpoint"):
        loaded = load_speaker_encoder(exp)
    _assert_matches(loaded, model)
    assert loaded.head == HeadConfig(-1, 16, 16, 24, pooling="toolkit")
    assert loaded.model.pooling.attention[2].num_batches_tracked.dtype == torch.int64
    assert any("projection.weight" in note for note in loaded.notes)
    assert "projection.weight" in caplog.text and "masked_spec_embed" in caplog.text
    digest = hashlib.sha256((exp / "avg_model.pt").read_bytes()).hexdigest()
    assert loaded.source_sha256 == {"avg_model.pt": digest}
    assert loaded.source["toolkit"] == "wespeaker" and loaded.source["checkpoint_sha256"] == digest
    assert loaded.source["config"]["dataset_args.w2vbert_args"]["model_name"] == "w2v-bert-tiny"  # no local path
    assert loaded.preprocessor_config == W2VBERT_PREPROCESSOR


def test_stage1_lora_checkpoint_is_merged_with_alpha_over_r(tmp_path):
    model = _model(seed=4)
    gen = torch.Generator().manual_seed(0)
    lora, merged = {}, copy.deepcopy(model)
    for i in range(2):
        for name in ("linear_q", "linear_v"):
            module = f"encoder.layers.{i}.self_attn.{name}"
            linear = merged.encoder.get_submodule(module)
            a = torch.randn(LORA_R, linear.in_features, generator=gen) * 0.3  # (r, in)
            b = torch.randn(linear.out_features, LORA_R, generator=gen) * 0.3  # (out, r)
            lora[module] = (a, b)
            with torch.no_grad():
                linear.weight += (LORA_ALPHA / LORA_R) * b @ a
    exp = _write(tmp_path, _wespeaker_state(model, lora), _yaml(str(tmp_path / "w2v-bert-tiny"), lora=True))
    loaded = load_speaker_encoder(exp)
    _assert_matches(loaded, merged)
    assert any("merged 4 LoRA pairs (scaling 1.5)" in note for note in loaded.notes)


def test_experiment_directory_and_an_epoch_checkpoint(tmp_path):
    model, other = _model(seed=5), _model(seed=6)
    config = _yaml(str(tmp_path / "w2v-bert-tiny"))
    exp = _write(tmp_path, _wespeaker_state(model), config, "models/avg_model.pt")
    torch.save(_wespeaker_state(other), exp / "models" / "model_3.pt")
    _assert_matches(load_speaker_encoder(exp), model)
    epoch = load_speaker_encoder(exp, checkpoint=exp / "models" / "model_3.pt")
    _assert_matches(epoch, other)
    assert epoch.source["checkpoint"] == "model_3.pt"
    (exp / "models" / "avg_model.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"neither of \['avg_model.pt', 'models/avg_model.pt'\]"):
        load_speaker_encoder(exp)


def _broken(tmp_path: Path, change_state=None, **change_config) -> Path:
    model = _model()
    state, config = _wespeaker_state(model), _yaml(str(tmp_path / "w2v-bert-tiny"))
    if change_state:
        change_state(state)
    for key, value in change_config.items():
        section = config["model_args"] if key in config["model_args"] or key == "pooling_func" else config
        section[key] = value
    return _write(tmp_path, state, config)


@pytest.mark.parametrize(
    ("change_state", "change_config", "error", "match"),
    [
        (lambda s: s.update({"frontend.extra.weight": torch.zeros(2)}), {}, InputError, r"frontend\.extra\.weight"),
        (
            lambda s: s.update({"frontend.encoder.encoder.extra": torch.zeros(2)}),
            {},
            CheckpointMismatchError,
            r"unexpected \(1\):\n\s+encoder\.encoder\.extra",
        ),
        (lambda s: s.pop("bottleneck.bias"), {}, CheckpointMismatchError, r"missing \(1\):\n\s+bottleneck\.bias"),
        (None, {"embed_dim": 20}, CheckpointMismatchError, r"bottleneck\.weight: checkpoint \(24, 96\) vs model"),
        (None, {"pooling_func": "MQMHASTP"}, InputError, r"pooling_func is 'MQMHASTP'.*only 'ASP'"),
        (None, {"num_frontend_hidden_layers": 24}, InputError, r"num_frontend_hidden_layers=24.*num_hidden_layers=2"),
        (None, {"model": "ECAPA_TDNN_GLOB_c512"}, InputError, r"W2VBert_Adapter_MFA checkpoints only"),
        (
            lambda s: s.update({"frontend.encoder.x.lora_A.default.weight": torch.zeros(2)}),
            {},
            InputError,
            r"LoRA tensors .*use_lora: true",
        ),
    ],
    ids=["unknown-prefix", "unexpected-encoder-key", "missing", "wrong-shape", "pooling", "layers", "model", "lora"],
)
def test_bad_checkpoints_are_refused_naming_the_keys(tmp_path, change_state, change_config, error, match):
    exp = _broken(tmp_path, change_state, **change_config)
    with pytest.raises(error, match=match):
        load_speaker_encoder(exp)


def test_a_hub_model_other_than_w2v_bert_2_needs_its_config(tmp_path):
    model = _model()
    exp = _write(tmp_path, _wespeaker_state(model), _yaml("someone/w2v-bert-3.0"))
    with pytest.raises(InputError, match=r"'someone/w2v-bert-3.0'.*never reaches a hub; pass its config.json"):
        load_speaker_encoder(exp)
    _assert_matches(load_speaker_encoder(exp, config=tmp_path / "w2v-bert-tiny" / "config.json"), model)


def test_w2v_bert_2_hub_id_uses_the_bundled_public_config(tmp_path, monkeypatch):
    """The bundled copy describes the full w2v-bert-2.0 encoder: built on the meta device, it has the
    demo's independently written full-size parameter count (plus masked_spec_embed), and its
    preprocessor config is w2v-bert-2.0's."""
    from w2vlab.model import _wespeaker

    ws = _wespeaker.read_config(_write(tmp_path, {}, _yaml(_wespeaker.HUB_ID)) / "config.yaml")
    monkeypatch.chdir(tmp_path)  # no folder named facebook/w2v-bert-2.0 here
    base, pre, notes = _wespeaker.resolve_encoder(ws, tmp_path / "exp", has_override=False)
    assert pre == W2VBERT_PREPROCESSOR and "bundled copy" in notes[0]
    with torch.device("meta"):
        bundled, demo = build_encoder(base), build_encoder(encoder_config("full"))
    assert count_parameters(bundled) == count_parameters(demo) + 1024
    pyproject = pytest.importorskip("tomllib").loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["w2vlab.model"]
    shipped = sorted(
        str(p.relative_to(ROOT / "w2vlab" / "model")) for g in globs for p in (ROOT / "w2vlab" / "model").glob(g)
    )
    assert {"data/w2v-bert-2.0/config.json", "data/w2v-bert-2.0/preprocessor_config.json"} <= set(shipped), shipped


def test_lora_scaling_argument_is_refused_for_a_wespeaker_directory(full_dir):
    with pytest.raises(InputError, match="lora_alpha / r of config.yaml"):
        load_speaker_encoder(full_dir[0], lora_scaling=2.0)


def test_cli_export_of_a_wespeaker_directory(full_dir, tmp_path, capsys):
    """The preprocessed and waveform artifacts pass the quick suite; the card names the source."""
    exp, _ = full_dir
    out = tmp_path / "art"
    assert main(["export", "--model-path", str(exp), "--output", str(out), "--mode", "both", "--suite", "quick"]) == 0
    metadata = json.loads((out / "metadata.json").read_text())
    digest = hashlib.sha256((exp / "avg_model.pt").read_bytes()).hexdigest()
    assert metadata["source"]["toolkit"] == "wespeaker"
    assert metadata["source"]["checkpoint"] == "avg_model.pt"
    assert metadata["source"]["checkpoint_sha256"] == digest
    assert metadata["source"]["config"]["model_args"]["pooling_func"] == "ASP"
    assert sorted(metadata["artifacts"]) == ["preprocessed", "waveform"]
    card = (out / "README.md").read_text()
    assert "- Source: a wespeaker checkpoint, `avg_model.pt`" in card and digest in card
    assert str(exp.parent) not in json.dumps(metadata)  # no local paths
    assert main(["verify", str(out), "--model-path", str(exp), "--suite", "quick"]) == 0


def test_pruned_config_from_model_config_file(tmp_path):
    """``model_config_file`` names a pruned config inside the folder; the folder's config.json is not read."""
    model, cfg = build_demo_model(pruned=True, seed=7)
    config = _yaml(str(tmp_path / "w2v-bert-tiny"), feat_dim=64, embed_dim=32, num_frontend_hidden_layers=4)
    config["dataset_args"]["w2vbert_args"]["model_config_file"] = "pruned.json"
    exp = _write(tmp_path, _wespeaker_state(model), config)
    (tmp_path / "w2v-bert-tiny" / "pruned.json").write_text(json.dumps(encoder_config(pruned=True)))
    loaded = load_speaker_encoder(exp)
    assert loaded.encoder_config["num_attention_heads_group"] == cfg["num_attention_heads_group"]
    _assert_matches(loaded, model)


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_the_demo_writer_makes_a_directory_that_loads_as_its_model(tmp_path, lora_rank):
    """``write_wespeaker_demo`` (the notebook's stand-in for a user's exp/ directory): full and stage-1."""
    from w2vlab.model import write_wespeaker_demo

    exp, model = write_wespeaker_demo(tmp_path / "exp", lora_rank=lora_rank)
    state = torch.load(exp / "avg_model.pt", weights_only=True)
    assert "projection.weight" in state and "frontend.encoder.masked_spec_embed" not in state
    assert any(".lora_A.default.weight" in k for k in state) == bool(lora_rank)
    loaded = load_speaker_encoder(exp)
    assert any("LoRA" in note for note in loaded.notes) == bool(lora_rank)
    _assert_matches(loaded, model)  # WeSpeaker's computation restated on the weights it was written from
    with pytest.raises(FileExistsError):
        write_wespeaker_demo(tmp_path / "exp")
