"""HF Trainer speaker heads: ``Wav2Vec2BertForXVector`` and ``Wav2Vec2BertForSequenceClassification`` folders.

Each test builds a tiny random model from a config (hidden 32, 2 layers, as w2vlab's ``tiny`` demo;
eager attention), saves it with ``save_pretrained`` plus the extractor's ``preprocessor_config.json``,
and compares what w2vlab makes of it with the stock class loaded by ``from_pretrained`` (the
independent reference) on HF's extractor features.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    SeamlessM4TFeatureExtractor,
    Wav2Vec2BertConfig,
    Wav2Vec2BertForSequenceClassification,
    Wav2Vec2BertForXVector,
)

from w2vlab._contract import ArtifactError, InputError
from w2vlab.export._pipeline import export
from w2vlab.export._suite import build_suite, synthetic_speech
from w2vlab.model._checkpoint import CheckpointMismatchError, load_speaker_encoder
from w2vlab.model._config import W2VBERT_PREPROCESSOR
from w2vlab.model._demo import encoder_config
from w2vlab.model._hf_heads import architecture_of
from w2vlab.runtime._artifact import load_artifact

DATA = Path(__file__).parent / "data"
# HF's default TDNN (kernels 5, 3, 3, 1, 1; dilations 1, 2, 3, 1, 1), narrowed: 14 rows of context.
TDNN = dict(tdnn_dim=[32, 32, 32, 32, 48], tdnn_kernel=[5, 3, 3, 1, 1], tdnn_dilation=[1, 2, 3, 1, 1])
LABELS = {0: "de", 1: "en", 2: "fr"}
# 16 rows (14 of TDNN context + 2 TDNN frames) of 2 stacked 10 ms frames: 32 frames of 400 samples, hop 160.
XVECTOR_MIN_SAMPLES = 400 + 31 * 160  # 5360
MAX_REL = 3e-5  # the default fp32 export bound, max|diff| / max|ref|
# Parity cases of the fast exports: clips alone (one under the x-vector's minimum) and a padded batch.
CASES = build_suite(lengths=(560, 8160, 24000), batches=((16160, 8000, 4000),))


def _save(out: Path, cls: type, seed: int = 0, **fields) -> Path:
    """A tiny random ``cls`` saved as HF Trainer leaves it, with head weights at a trained model's scale."""
    config = {k: v for k, v in encoder_config("tiny").items() if k != "architectures"}
    config.update(TDNN, xvector_output_dim=24, classifier_proj_size=16, num_labels=len(LABELS))
    config.update(id2label=LABELS, label2id={v: k for k, v in LABELS.items()}, **fields)
    torch.manual_seed(seed)
    model = cls(Wav2Vec2BertConfig(**config, attn_implementation="eager")).eval()
    with torch.no_grad():  # HF's init (std 0.02) leaves x-vectors near 1e-6; these keep them near 1
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and not name.startswith("wav2vec2_bert"):
                module.weight.normal_(0.0, module.in_features**-0.5)
    model.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(W2VBERT_PREPROCESSOR))
    return out


@pytest.fixture(scope="module")
def xvector_dir(tmp_path_factory) -> Path:
    return _save(tmp_path_factory.mktemp("hf") / "xvector", Wav2Vec2BertForXVector)


@pytest.fixture(scope="module")
def seqcls_dir(tmp_path_factory) -> Path:
    return _save(tmp_path_factory.mktemp("hf") / "seqcls", Wav2Vec2BertForSequenceClassification, seed=1)


def _stock(folder: Path) -> torch.nn.Module:
    """The independent reference: the class config.json names, loaded by transformers itself."""
    cls = {"Wav2Vec2BertForXVector": Wav2Vec2BertForXVector}.get(
        architecture_of(folder), Wav2Vec2BertForSequenceClassification
    )
    return cls.from_pretrained(folder, attn_implementation="eager").eval()


def _features(folder: Path, waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """HF's extractor on ``waves``: padded features [B, T, 160] and mask [B, T]."""
    fe = SeamlessM4TFeatureExtractor.from_pretrained(folder)
    out = fe(waves, sampling_rate=16000, padding=True, return_attention_mask=True, return_tensors="pt")
    return out["input_features"], out["attention_mask"]


def _alone(model: torch.nn.Module, folder: Path, waves: list[np.ndarray], output: str) -> torch.Tensor:
    """``output`` of ``model`` on each clip alone (its valid rows, no mask): [B, D]."""
    rows = []
    for wave in waves:
        features, mask = _features(folder, [wave])
        rows.append(getattr(model(features[:, : int(mask.sum())]), output)[0])
    return torch.stack(rows)


def _rel(candidate: torch.Tensor, reference: torch.Tensor) -> float:
    """The worst clip's max|diff| / max|ref|."""
    return float(((candidate - reference).abs().amax(-1) / reference.abs().amax(-1)).max())


def _waves(*lengths: int) -> list[np.ndarray]:
    return [synthetic_speech(n, seed=i) for i, n in enumerate(lengths)]


def test_config_json_names_the_head(xvector_dir, seqcls_dir, tiny_dir):
    assert architecture_of(xvector_dir) == "Wav2Vec2BertForXVector"
    assert architecture_of(seqcls_dir) == "Wav2Vec2BertForSequenceClassification"
    assert architecture_of(tiny_dir) is None  # w2vlab's own layout names Wav2Vec2BertModel
    assert architecture_of(xvector_dir / "model.safetensors") is None


def test_the_objective_is_dropped_with_a_note_and_nothing_else(xvector_dir, caplog):
    with caplog.at_level("INFO", logger="w2vlab.model._checkpoint"):
        loaded = load_speaker_encoder(xvector_dir)
    assert any("objective.weight" in note and "AM-softmax" in note for note in loaded.notes)
    assert "objective.weight" in caplog.text
    assert "objective.weight" not in loaded.model.state_dict()
    stored = load_file(xvector_dir / "model.safetensors")
    kept = {k[len("hf.") :] for k in loaded.model.state_dict()}
    assert kept == set(stored) - {"objective.weight"}


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s: s.update({"projector.extra": torch.zeros(2)}), r"unexpected \(1\):\s+projector.extra"),
        (lambda s: s.pop("tdnn.0.kernel.bias"), r"missing \(1\):\s+tdnn.0.kernel.bias"),
        (lambda s: s.update({"projector.bias": torch.zeros(5)}), r"shape mismatch \(1\):\s+projector.bias"),
    ],
)
def test_loading_is_strict_naming_the_keys(xvector_dir, tmp_path, change, match):
    folder = shutil.copytree(xvector_dir, tmp_path / "changed")
    state = load_file(folder / "model.safetensors")
    change(state)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointMismatchError, match=match):
        load_speaker_encoder(folder)


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"add_adapter": True}, "add_adapter"),
        ({"use_attention": [True, False]}, "pruning fields"),
    ],
)
def test_configs_the_stock_class_cannot_export_are_refused(xvector_dir, tmp_path, fields, match):
    folder = shutil.copytree(xvector_dir, tmp_path / "changed")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **fields}))
    with pytest.raises(InputError, match=match):
        load_speaker_encoder(folder)
    with pytest.raises(InputError, match="lora_scaling"):
        load_speaker_encoder(xvector_dir, lora_scaling=2.0)


def test_eager_model_is_hfs_own_forward(xvector_dir, seqcls_dir):
    """Alone: the x-vector's ``embeddings``; the classifier's input gives HF's ``logits`` through the classifier."""
    waves = _waves(24000, 40037)
    with torch.no_grad():
        x = load_speaker_encoder(xvector_dir).model
        reference = _alone(_stock(xvector_dir), xvector_dir, waves, "embeddings")
        mine = torch.stack([x(*_features(xvector_dir, [w]))[0] for w in waves])
        torch.testing.assert_close(mine, reference, rtol=0, atol=0)  # the same forward, the same weights
        s = load_speaker_encoder(seqcls_dir)
        features, mask = _features(seqcls_dir, waves)
        head = load_file(seqcls_dir / "model.safetensors")
        logits = torch.nn.functional.linear(s.model(features, mask), head["classifier.weight"], head["classifier.bias"])
        torch.testing.assert_close(logits, _stock(seqcls_dir)(features, attention_mask=mask).logits, rtol=0, atol=0)


def test_hfs_batched_xvector_pools_padding_and_w2vlab_does_not(xvector_dir):
    """HF counts TDNN frames without the dilation: a padded clip's batched x-vector reads 6 frames of padding.
    w2vlab's eager (clip by clip) and captured (masked) forms both give each clip's x-vector alone."""
    waves = _waves(24000, 16160, 8000)
    features, mask = _features(xvector_dir, waves)
    with torch.no_grad():
        stock = _stock(xvector_dir)
        alone = _alone(stock, xvector_dir, waves, "embeddings")
        batched = stock(features, attention_mask=mask).embeddings
        model = load_speaker_encoder(xvector_dir).model
        eager, captured = model(features, mask), model.captured(features, mask)
    assert _rel(batched[:1], alone[:1]) < 1e-6  # the longest clip: its slice stops at the tensor's end
    assert _rel(batched[1:], alone[1:]) > 1e-2  # padding read: 2e-2 to 2e-1 in docs/hf_heads.md
    assert _rel(eager, alone) == 0.0
    assert _rel(captured, alone) < MAX_REL


def test_sequence_classification_is_batch_invariant_as_hf_gives_it(seqcls_dir):
    waves = _waves(24000, 16160, 8000)
    features, mask = _features(seqcls_dir, waves)
    with torch.no_grad():
        stock = _stock(seqcls_dir)
        alone = _alone(stock, seqcls_dir, waves, "logits")
        assert _rel(stock(features, attention_mask=mask).logits, alone) < MAX_REL
        model = load_speaker_encoder(seqcls_dir).model
        torch.testing.assert_close(model.captured(features, mask), model(features, mask), rtol=1e-6, atol=0)


def _exported(model_dir: Path, out: Path) -> Path:
    """``model_dir`` exported in both modes to TorchScript and ``.pt2``, verified on :data:`CASES`."""
    formats = ("torchscript", "exported")
    export(model_dir, out, modes=("preprocessed", "waveform"), formats=formats, cases=CASES, progress=False)
    return out


@pytest.fixture(scope="module")
def xvector_artifact(xvector_dir, tmp_path_factory) -> Path:
    return _exported(xvector_dir, tmp_path_factory.mktemp("art") / "xvector")


@pytest.fixture(scope="module")
def seqcls_artifact(seqcls_dir, tmp_path_factory) -> Path:
    return _exported(seqcls_dir, tmp_path_factory.mktemp("art") / "seqcls")


@pytest.mark.parametrize("fmt", ["torchscript", "exported"])
@pytest.mark.parametrize("mode", ["preprocessed", "waveform"])
def test_xvector_artifact_gives_hfs_embeddings_alone_and_in_batches(xvector_artifact, xvector_dir, mode, fmt):
    art = load_artifact(xvector_artifact, mode, fmt)
    waves = _waves(24000, 16160, 8000, 40037)
    with torch.no_grad():
        reference = _alone(_stock(xvector_dir), xvector_dir, waves, "embeddings")
    single = torch.stack([art.embed(w, 16000) for w in waves])
    batch = art.embed_batch(waves, 16000)
    assert _rel(single, reference) < MAX_REL
    assert _rel(batch, reference) < MAX_REL
    assert _rel(batch, single) < MAX_REL


def test_xvector_metadata_card_and_minimum(xvector_artifact, xvector_dir):
    metadata = json.loads((xvector_artifact / "metadata.json").read_text())
    assert metadata["min_num_samples"] == XVECTOR_MIN_SAMPLES
    assert metadata["model"]["head"]["architecture"] == "Wav2Vec2BertForXVector"
    assert metadata["embedding_dim"] == 24
    assert metadata["source"]["toolkit"] == "transformers"
    assert any("objective.weight" in note for note in metadata["model"]["config_notes"])
    parity = json.loads((xvector_artifact / "parity.json").read_text())
    clips = [c["name"] for c in parity["preprocessed"]["clips"]]
    assert "synth_560" not in clips and any("-short" in name for name in clips), clips
    card = (xvector_artifact / "README.md").read_text()
    assert "- Head: `Wav2Vec2BertForXVector`, the stock transformers class" in card
    assert "`embeddings` of XVectorOutput" in card and "cosine similarity" in card
    assert "at least 5360 samples" in card
    art = load_artifact(xvector_artifact)
    with pytest.raises(ValueError, match=f"the model needs at least {XVECTOR_MIN_SAMPLES} samples"):
        art.embed(synthetic_speech(XVECTOR_MIN_SAMPLES - 1), 16000)
    assert art.labels is None
    with pytest.raises(ArtifactError, match="without a classifier"):
        art.classify(torch.zeros(1, 24))


@pytest.mark.parametrize("mode", ["preprocessed", "waveform"])
def test_sequence_classification_artifact_logits_are_hfs(seqcls_artifact, seqcls_dir, mode):
    art = load_artifact(seqcls_artifact, mode, "exported")
    waves = _waves(24000, 16160, 8000)
    features, mask = _features(seqcls_dir, waves)
    with torch.no_grad():
        reference = _stock(seqcls_dir)(features, attention_mask=mask).logits  # HF's own, batched
    assert art.labels == ["de", "en", "fr"]
    logits = art.classify(art.embed_batch(waves, 16000))
    assert _rel(logits, reference) < MAX_REL
    assert art.classify(art.embed(waves[0], 16000)).shape == (3,)
    card = (seqcls_artifact / "README.md").read_text()
    assert "- Labels: 0 `de`, 1 `en`, 2 `fr`." in card and "classifier.safetensors" in card


def test_a_modified_classifier_is_refused(seqcls_artifact, tmp_path):
    copy = shutil.copytree(seqcls_artifact, tmp_path / "copy")
    state = load_file(copy / "classifier.safetensors")
    state["bias"] = state["bias"] + 1
    save_file(state, copy / "classifier.safetensors")
    with pytest.raises(ArtifactError, match="sha256"):
        load_artifact(copy).classify(torch.zeros(2, 16))


@pytest.mark.parametrize(
    "cls",
    [Wav2Vec2BertForXVector, pytest.param(Wav2Vec2BertForSequenceClassification, marks=pytest.mark.slow)],
)
def test_weighted_layer_sum_exports(tmp_path, cls):
    folder = _save(tmp_path / "weighted", cls, seed=2, use_weighted_layer_sum=True)
    result = export(folder, tmp_path / "art", formats=("torchscript", "exported"), cases=CASES, progress=False)
    assert all(report.passed for report in result.all_reports)
    with torch.no_grad():
        waves = _waves(24000)
        output = "embeddings" if cls is Wav2Vec2BertForXVector else "logits"
        reference = _alone(_stock(folder), folder, waves, output)
    art = load_artifact(tmp_path / "art")
    embedding = art.embed_batch(waves, 16000)
    assert _rel(embedding if output == "embeddings" else art.classify(embedding), reference) < MAX_REL


@pytest.mark.slow  # every format of both modes through the CLI (ONNX, int8), then the corpus tools
def test_cli_export_verify_and_the_corpus_tools(xvector_dir, tmp_path, capsys):
    """As a user would: ``w2vlab export --format all``, ``verify``, ``embed-corpus``, ``score-trials`` and
    ``compare-trials`` on the committed corpus (40 clips of 1.3-2.5 s, 320 trials), unchanged."""
    from w2vlab._contract import onnx_available
    from w2vlab.cli import main

    if not onnx_available():
        pytest.skip("the ONNX formats need the [onnx] extra")
    out = tmp_path / "art"
    export_args = ["export", "--model-path", str(xvector_dir), "--output", str(out), "--mode", "both"]
    assert main([*export_args, "--format", "all", "--suite", "quick"]) == 0
    assert main(["verify", str(out), "--model-path", str(xvector_dir), "--suite", "quick"]) == 0
    corpus = DATA / "corpus"
    for fmt in ("torchscript", "onnx"):
        args = ["embed-corpus", str(corpus / "wav.scp"), "--output", str(tmp_path / fmt), "--artifact", str(out)]
        assert main([*args, "--format", fmt, "--mode", "waveform"]) == 0
    capsys.readouterr()
    assert main(["score-trials", str(tmp_path / "torchscript"), str(corpus / "trials.txt"), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert (scores["n_trials"], scores["skipped"]) == (320, 0) and 0.0 <= scores["eer"] <= 1.0
    trials = corpus / "trials.txt"
    assert main(["compare-trials", str(tmp_path / "torchscript"), str(tmp_path / "onnx"), str(trials), "--json"]) == 0
    comparison = json.loads(capsys.readouterr().out)
    assert comparison["n_trials"] == 320 and comparison["n_flips"] == 0
    assert comparison["abs_diff"]["max"] < 1e-4  # cosine scores of fp32 TorchScript vs ONNX


@pytest.mark.slow  # compiles the C++ program (once per session) and an AOTInductor package
def test_the_cpp_consumer_embeds_with_an_xvector_aoti_package(xvector_dir, tmp_path):
    from w2vlab.runtime import _cpp as cpp_consumer

    try:
        program = cpp_consumer.build()
    except cpp_consumer.MissingBuildDependencies as e:
        pytest.skip(f"the C++ consumer's build dependencies cannot be installed here: {e}")
    out = tmp_path / "art"
    export(xvector_dir, out, modes=("waveform",), formats=("aoti",), cases=CASES, progress=False)
    files = sorted((DATA / "corpus" / "wav").glob("*.wav"))[:4]
    for fmt in ("torchscript", "aoti"):
        run = cpp_consumer.run(out, files, aoti=fmt == "aoti", program=program)
        assert run.returncode == 0 and not run.errors, run.stderr
        art = load_artifact(out, "waveform", fmt)
        python = torch.stack([art.embed_file(f) for f in files])
        cpp = torch.from_numpy(np.stack([run.embeddings[str(f)] for f in files]))
        assert _rel(cpp, python) < MAX_REL


def test_the_explorer_compares_an_xvector_artifact_with_hfs_forward(xvector_artifact, xvector_dir):
    from w2vlab.lab._widgets import build_workbench, explore

    bench = build_workbench(xvector_dir, xvector_artifact, DATA)
    assert "synth_561" not in bench.clips and all(len(w) >= XVECTOR_MIN_SAMPLES for w in bench.clips.values())
    clips = ["speech_en_m3_2s", "speech_en_f2_2s", "synth_16160_odd"]
    for mode in ("preprocessed", "waveform"):
        for batched in (False, True):
            result = explore(bench, mode, clips, batched, format="exported")
            assert result.report.passed, result.report
