"""The artifact's README.md: a model card rendered from its metadata."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from w2vlab._contract import EXTRACTOR_DIR, FILES, FORMATS, format_entries
from w2vlab._features import FeatureConfig
from w2vlab._parity import ParityBounds
from w2vlab.export._decisions import effect_text

_PREPROCESSED_SNIPPET = """\
```python
import torch, numpy as np
from transformers import AutoFeatureExtractor

artifact_dir = "{dirname}"
model = torch.jit.load(f"{{artifact_dir}}/{file}").eval()
fe = AutoFeatureExtractor.from_pretrained(f"{{artifact_dir}}/feature_extractor")

wave = np.random.default_rng(0).standard_normal(2 * {sr}).astype(np.float32) * 0.1  # your 16 kHz mono audio
out = fe(wave, sampling_rate={sr}, return_tensors="pt", return_attention_mask=True)
feats = out["input_features"][0][out["attention_mask"][0].bool()]  # [T, {fd}], valid rows only
with torch.inference_mode():
    embedding = model(feats.unsqueeze(0))[0]  # [{dim}]
    # a padded batch: pass the extractor's mask, model(out["input_features"], out["attention_mask"])
```"""

# Toolkit pooling: the extractor's output as it comes; in a padded batch, each clip's rows as well.
_TOOLKIT_SNIPPET = """\
```python
import torch, numpy as np
from transformers import AutoFeatureExtractor

artifact_dir = "{dirname}"
model = torch.jit.load(f"{{artifact_dir}}/{file}").eval()
fe = AutoFeatureExtractor.from_pretrained(f"{{artifact_dir}}/feature_extractor")

rng = np.random.default_rng(0)  # your 16 kHz mono clips; 16160 samples = 99 frames, an odd count
waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (2 * {sr}, 16160)]
out = fe(waves[0], sampling_rate={sr}, return_tensors="pt", return_attention_mask=True)
with torch.inference_mode():
    embedding = model(out["input_features"], out["attention_mask"])[0]  # [{dim}]: every row pooled
    # a padded batch: also pass each clip's rows, the half row of an odd frame count included
    batch = fe(waves, sampling_rate={sr}, padding=True, return_tensors="pt", return_attention_mask=True)
    rows = torch.tensor([{rows_expr} for w in waves])  # ceil(frames / 2)
    embeddings = model(batch["input_features"], batch["attention_mask"], rows)  # [2, {dim}]
```"""

_WAVEFORM_SNIPPET = """\
```python
import torch
model = torch.jit.load("{dirname}/{file}").eval()
wave = torch.randn(1, 2 * {sr}, generator=torch.Generator().manual_seed(0)) * 0.1  # [batch, samples], {sr} Hz mono
with torch.inference_mode():
    embedding = model(wave)[0]  # [{dim}]; padded batch: model(waves, lengths)
```"""

# The .pt2 and ONNX programs take every input, with the dtypes of the metadata: the HF extractor's
# output as it comes (its mask is int32, what the programs were captured with).
_PROGRAM_INPUTS = {
    "preprocessed": """\
import numpy as np, torch
from transformers import AutoFeatureExtractor

fe = AutoFeatureExtractor.from_pretrained("{dirname}/{extractor}")
wave = np.random.default_rng(0).standard_normal(2 * {sr}).astype(np.float32) * 0.1  # your {sr} Hz mono audio
out = fe(wave, sampling_rate={sr}, return_tensors="pt", return_attention_mask=True)
inputs = out["input_features"], out["attention_mask"]  # [1, T, {fd}] float32, [1, T] int32""",
    "preprocessed-toolkit": """\
import numpy as np, torch
from transformers import AutoFeatureExtractor

fe = AutoFeatureExtractor.from_pretrained("{dirname}/{extractor}")
wave = np.random.default_rng(0).standard_normal(16160).astype(np.float32) * 0.1  # your {sr} Hz mono audio
out = fe(wave, sampling_rate={sr}, return_tensors="pt", return_attention_mask=True)
rows = torch.tensor([{rows_expr_wave}])  # the clip's rows, half row included: ceil(frames / 2)
inputs = out["input_features"], out["attention_mask"], rows  # [1, T, {fd}] float32, [1, T] int32, [1] int64""",
    "waveform": """\
import torch
wave = torch.randn(1, 2 * {sr}, generator=torch.Generator().manual_seed(0)) * 0.1  # [batch, samples], {sr} Hz mono
inputs = wave, torch.tensor([wave.shape[1]])  # [1, N] float32 (N >= 720), lengths [1] int64""",
}
# The OpenVINO IR without torch: numpy inputs, the compiled model at f32 (the CPU plugin's default is bf16 on a
# CPU with AVX512_BF16 or AMX)
_OPENVINO_INPUTS = {
    "preprocessed": """\
import numpy as np
import openvino as ov
from transformers import AutoFeatureExtractor

fe = AutoFeatureExtractor.from_pretrained("{dirname}/{extractor}")
wave = np.random.default_rng(0).standard_normal(2 * {sr}).astype(np.float32) * 0.1  # your {sr} Hz mono audio
out = fe(wave, sampling_rate={sr}, return_tensors="np", return_attention_mask=True)
inputs = [out["input_features"], out["attention_mask"].astype(np.int32)]  # [1, T, {fd}] float32, [1, T] int32""",
    "preprocessed-toolkit": """\
import numpy as np
import openvino as ov
from transformers import AutoFeatureExtractor

fe = AutoFeatureExtractor.from_pretrained("{dirname}/{extractor}")
wave = np.random.default_rng(0).standard_normal(16160).astype(np.float32) * 0.1  # your {sr} Hz mono audio
out = fe(wave, sampling_rate={sr}, return_tensors="np", return_attention_mask=True)
rows = np.array([{rows_expr_wave}], dtype=np.int64)  # the clip's rows, half row included: ceil(frames / 2)
inputs = [out["input_features"], out["attention_mask"].astype(np.int32), rows]  # [1, T, {fd}], [1, T] int32, [1]""",
}
_OPENVINO_CALL = """\
# f32 explicitly: on a CPU with AVX512_BF16 or AMX, OpenVINO's CPU plugin would run the fp32 weights in bf16
compiled = ov.Core().compile_model("{dirname}/{file}", "CPU", {{"INFERENCE_PRECISION_HINT": "f32"}})
embedding = compiled(inputs)[compiled.outputs[0]][0]  # [{dim}] float32 numpy"""
_OPENVINO_NOTE = (
    "The `_openvino.xml` files are the fp32 ONNX program as OpenVINO IR (weights fp32, in the `.bin` of the "
    "same name: keep it beside its `.xml`), run by OpenVINO's CPU plugin without torch. Compile them with "
    '`INFERENCE_PRECISION_HINT` `"f32"`: on a CPU with AVX512_BF16 or AMX the plugin otherwise runs them in '
    "bf16, which these parity numbers do not cover."
)
_PROGRAM_CALLS = {
    "exported": """\
program = torch.export.load("{dirname}/{file}").module()
with torch.inference_mode():
    embedding = program(*inputs)[0]  # [{dim}]""",
    "onnx": """\
import onnxruntime as ort
session = ort.InferenceSession("{dirname}/{file}")
feeds = {{i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}}
embedding = torch.from_numpy(session.run(["embedding"], feeds)[0][0])  # [{dim}]""",
    "aoti": """\
from torch._inductor import aoti_load_package
program = aoti_load_package("{dirname}/{file}")  # compiled for this CPU architecture and torch
with torch.inference_mode():  # the package reads its inputs as contiguous: pass them so
    embedding = program(*(x.contiguous() for x in inputs))[0]  # [{dim}]""",
}


def render_model_card(metadata: Mapping[str, Any], dirname: str = "w2vbert_speaker") -> str:
    """Markdown model card: what the artifact is, its inputs, extractor, parity, usage."""
    md = metadata
    lines = [
        *_summary(md),
        "## Files and parity",
        "",
        *_parity_table(md),
        "",
        *_refused_lines(md),
        "Parity was measured after saving and reloading each file, against HF's feature "
        "extractor and the eager PyTorch model; per-clip numbers are in `parity.json`. Each clip is held "
        "to a cosine bound and to a bound on its max|diff| relative to the largest value of its eager "
        "embedding (max|ref - cand| / max|ref|), so the bounds do not depend on the checkpoint's embedding "
        "scale; the absolute max|diff| is shown beside it.",
        "",
        "## Usage (needs only torch and transformers)",
        "",
        *_torchscript_snippets(md, dirname),
        *_program_snippets(md, dirname),
        *_gpu_section(md, dirname),
        "## Security",
        "",
        "A TorchScript archive is a program: `torch.jit.load` runs its code (a `.pt2` is loaded with "
        "`torch.export.load`, an ONNX graph run by ONNX Runtime, an OpenVINO IR by OpenVINO: trust their source the "
        "same way). Load archives only "
        "from sources you trust; `w2vlab info` checks the embedded metadata against `metadata.json` "
        "and the content hash of the file it opens before use.",
        "",
    ]
    return "\n".join(lines)


def _summary(md: Mapping[str, Any]) -> list[str]:
    """The card's title and the facts list: versions, encoder, head, output, audio, extractor."""
    model = md["model"]
    enc = model["encoder_config"]
    pruned = "num_attention_heads_group" in enc
    return [
        "# W2V-BERT 2.0 speaker encoder (TorchScript)",
        "",
        f"Exported by w2vlab {md['versions']['w2vlab']} (format `{md['format']}`) with torch "
        f"{md['versions']['torch']} and transformers {md['versions']['transformers']}.",
        "",
        f"- Encoder: `Wav2Vec2BertModel`, {enc['num_hidden_layers']} conformer layers, hidden "
        f"{enc['hidden_size']}{', structured-pruning student' if pruned else ''}; "
        f"{model['parameters']:,} parameters in all.",
        *_head_lines(md),
        f"- Audio: {md['sample_rate']} Hz mono; at least {md['min_num_samples']} samples "
        f"({md['min_duration_s'] * 1000:.0f} ms).",
        f"- Compiled by `torch.jit.{md['export']['path']}`"
        + (f" (script failed: {md['export']['script_error']})" if md["export"]["script_error"] else "")
        + ".",
        f"- Feature extractor: `feature_extractor/preprocessor_config.json` "
        f"({md['feature_extractor']['config'].get('feature_extractor_type')}, sha256 "
        f"`{md['feature_extractor']['sha256'][:12]}`).",
        *_source_line(md.get("source")),
        "",
    ]


def _head_lines(md: Mapping[str, Any]) -> list[str]:
    """Which head, which output, how to score, and the labels where the head has any."""
    head, dim = md["model"]["head"], md["embedding_dim"]
    if head.get("kind") != "transformers":
        return [
            f"- Head: {head} (MFA adapters -> attentive statistics pooling -> bottleneck).",
            f"- Pooling: {md['pooling']}: {POOLING_TEXT[md['pooling']]}",
            f"- Output: a {dim}-d speaker embedding per clip; compare with cosine similarity.",
        ]
    lines = [
        f"- Head: `{head['architecture']}`, the stock transformers class; {head['pooling']}.",
        f"- Pooling: {md['pooling']} (HF's own, by the extractor's mask): {POOLING_TEXT[md['pooling']]}",
        f"- Output: a {dim}-d embedding per clip, {head['output']}. Score two clips by the cosine similarity "
        "of their embeddings (`w2vlab score-trials`, `Artifact.score`).",
    ]
    if head["architecture"].endswith("ForXVector"):
        lines.append(
            "- Batches: each clip gets the embedding HF's forward gives it alone. HF's own batched forward counts "
            "TDNN frames without the dilation (`_get_tdnn_output_lengths`), so with a dilated TDNN it also pools "
            "frames that read the padding of shorter clips; this artifact pools only frames of the clip, "
            "and the parity suite checked its batches against HF's forward run clip by clip."
        )
    classifier = head.get("classifier")
    if classifier:
        labels = sorted((head.get("id2label") or {}).items(), key=lambda kv: int(kv[0]))
        shown = ", ".join(f"{i} `{label}`" for i, label in labels[:20])
        more = f", ... ({len(labels)} in all: `model.head.id2label` in metadata.json)" if len(labels) > 20 else ""
        lines.append(
            f"- Labels: {shown}{more}. Logits: `embedding @ weight.T + bias` with `weight` {classifier['shape']} "
            f"and `bias` from `{classifier['file']}` (sha256 `{classifier['sha256'][:12]}`); "
            "`w2vlab.load_artifact(dir).classify(embeddings)` returns them, `.labels` the names."
        )
    return lines


def _source_line(source: Mapping[str, Any] | None) -> list[str]:
    """Where another toolkit's checkpoint came from: toolkit, file and sha256, the config fields read."""
    if not source:
        return []
    return [
        f"- Source: a {source['toolkit']} checkpoint, `{source['checkpoint']}` (sha256 "
        f"`{source['checkpoint_sha256']}`) with its `{source['config_file']}` (sha256 "
        f"`{source['config_sha256'][:12]}`); fields read: `{json.dumps(source['config'], sort_keys=True)}`."
    ]


POOLING_TEXT = {
    "toolkit": "an odd number of 10 ms frames gives a last stacked row that is half padding (mask 0); the "
    "encoder masks it and the pooling includes it, as WeSpeaker and the reference recipe do, so embeddings "
    "equal the toolkit's batch-1 extraction. In a padded batch the preprocessed files take each clip's row "
    "count (`clip_rows`); the waveform files derive it from the lengths.",
    "masked": "the pooling covers the rows whose mask is 1; an odd frame count's half-padding last row is "
    "left out (a toolkit that pools every row differs from this on those clips).",
}


def _rows_expr(var: str) -> str:
    """Python for a clip's rows, half row included, from its sample count ``var``: ceil(frames / 2)."""
    c = FeatureConfig()
    return f"(1 + (len({var}) - {c.frame_length}) // {c.hop_length} + 1) // {c.stride}"


def _torchscript_snippets(md: Mapping[str, Any], dirname: str) -> list[str]:
    """Markdown for the TorchScript archive of each mode."""
    sr, dim, fd = md["sample_rate"], md["embedding_dim"], md["feature_dim"]
    lines = []
    if "preprocessed" in md["artifacts"] and md["pooling"] == "toolkit":
        file = FILES["torchscript", "preprocessed"]
        code = _TOOLKIT_SNIPPET.format(dirname=dirname, file=file, sr=sr, dim=dim, rows_expr=_rows_expr("w"))
        lines += [code, ""]
    elif "preprocessed" in md["artifacts"]:
        file = FILES["torchscript", "preprocessed"]
        lines += [
            _PREPROCESSED_SNIPPET.format(dirname=dirname, file=file, sr=sr, dim=dim, fd=fd),
            "",
            "For an odd number of 10 ms frames the extractor pads its last stacked row; run a "
            "single clip on the valid rows only (as above) or pass the mask.",
            "",
        ]
    if "waveform" in md["artifacts"]:
        lines += [_WAVEFORM_SNIPPET.format(dirname=dirname, file=FILES["torchscript", "waveform"], sr=sr, dim=dim), ""]
    return lines


def _program_snippets(md: Mapping[str, Any], dirname: str) -> list[str]:
    """Markdown for the ``.pt2`` and ONNX files of each mode: one runnable block per file."""
    files = {
        (fmt, mode): entry["file"]
        for mode in md["artifacts"]
        for fmt, entry in format_entries(md, mode).items()
        if fmt != "torchscript"
    }
    if not files:
        return []
    lines = [
        "## The `.pt2` and ONNX files",
        "",
        '`w2vlab.load_artifact(dir, mode, format="exported" | "onnx" | "onnx-int8" | "aoti" | "openvino")` opens '
        "them with the "
        "checks and call signature above. Without w2vlab, pass every input (the optional ones too) with the "
        "dtypes below; a waveform program needs at least two feature rows (720 samples at 16 kHz).",
        "",
    ]
    if any(fmt == "aoti" for fmt, _ in files):
        lines += [
            "The `_aoti_` files are AOTInductor packages: the `.pt2` program compiled ahead of time to a "
            "shared library, loadable from C++ with `torch::inductor::AOTIModelPackageLoader` (w2vlab's "
            "C++ consumer, `w2vlab-embed --aoti`, built by `w2vlab.runtime.build()`, embeds audio files "
            "with the waveform one, no Python).",
            "",
        ]
    if any(fmt == "onnx-int8" for fmt, _ in files):
        lines += [*_int8_lines(md)]
    if any(fmt == "openvino" for fmt, _ in files):
        lines += [_OPENVINO_NOTE, ""]
    data = sorted(
        entry["external_data"]
        for mode in md["artifacts"]
        for entry in format_entries(md, mode).values()
        if "external_data" in entry
    )
    if data:
        lines += [
            f"Weights of the ONNX graphs are in {', '.join(f'`{name}`' for name in data)}: keep each "
            "beside its `.onnx` file.",
            "",
        ]
    values = dict(
        dirname=dirname,
        extractor=EXTRACTOR_DIR,
        sr=md["sample_rate"],
        dim=md["embedding_dim"],
        fd=md["feature_dim"],
        rows_expr_wave=_rows_expr("wave"),
    )
    for (fmt, mode), file in sorted(files.items(), key=lambda kv: (FORMATS.index(kv[0][0]), kv[0][1])):
        inputs = f"{mode}-toolkit" if mode == "preprocessed" and md["pooling"] == "toolkit" else mode
        code = _program_code(fmt, inputs, file, values)
        lines += [f"{fmt}, {mode} mode:", "", f"```python\n{code}\n```", ""]
    return lines


def _program_code(fmt: str, inputs: str, file: str, values: Mapping[str, Any]) -> str:
    """One runnable block: ``inputs``' preparation (a key of :data:`_PROGRAM_INPUTS`), then ``fmt``'s call."""
    if fmt == "openvino":  # no torch: numpy in, numpy out
        return _OPENVINO_INPUTS[inputs].format(**values) + "\n" + _OPENVINO_CALL.format(file=file, **values)
    return (
        _PROGRAM_INPUTS[inputs].format(**values) + "\n" + _PROGRAM_CALLS[fmt.split("-")[0]].format(file=file, **values)
    )


def _int8_lines(md: Mapping[str, Any]) -> list[str]:
    """What the int8 copies are, how they must be run, their matrix products as the graph has them, and what
    they do to the evaluation trials' decisions."""
    counts = [
        f"{mode}: {m['integer']} integer-kernel MatMuls, {m['float_weights']} float on weights, "
        f"{m['float_activations']} float between activations"
        for mode in md["artifacts"]
        if (m := format_entries(md, mode).get("onnx-int8", {}).get("matmuls"))
    ]
    decisions = [
        _decision_line(mode, entry["decisions"])
        for mode in md["artifacts"]
        if "decisions" in (entry := format_entries(md, mode).get("onnx-int8", {}))
    ]
    return [
        "The `_int8.onnx` files are dynamic-int8 copies (MatMul weights int8 per channel, the conv "
        "blocks' pointwise convolutions kept fp32): smaller and faster on CPU, verified to cosine "
        ">= 0.999 against eager, not bit-exact. Read from their graphs: " + ("; ".join(counts) or "no counts") + ".",
        "",
        *(f"- {line}" for line in decisions),
        *([""] if decisions else []),
        "Run them **one clip at a time** (`w2vlab.load_artifact` does): dynamic int8 quantises each "
        "activation tensor with one scale, so in a padded batch a clip's embedding would depend on the "
        "clips beside it.",
        "",
    ]


def _decision_line(mode: str, decisions: Mapping[str, Any]) -> str:
    """One int8 copy's decisions on its evaluation set, as the exporter measured them, or why it did not."""
    if not decisions.get("gated"):
        return f"Decisions ({mode}): **not gated**: {decisions.get('why', 'not measured')}."
    s, gate = decisions["eval_set"], decisions["gate"]
    kept = decisions["steps"][-1]["kept_fp32_added"]
    search = (
        f" {len(kept)} block(s) kept fp32 {'to meet it' if decisions['passed'] else 'when the search stopped'} "
        f"({', '.join(f'`{b}`' for b in kept)}), "
        f"{decisions['steps'][-1]['time_vs_first']:.2f}x the first recipe's time in the program."
        if kept
        else ""
    )
    return (
        f"Decisions ({mode}) on `{s['name']}` ({s['trials']} trials, {s['clips']} clips, sha256 {s['sha256'][:12]}), "
        f"against eager at eager's thresholds: {effect_text(decisions)}. Gate (<= {gate['max_flip_percent']}% flips "
        f"at each point, "
        f"|ΔEER| <= {gate['max_eer_change_points']} points): **{'passed' if decisions['passed'] else 'missed'}**."
        + search
    )


def _refused_lines(md: Mapping[str, Any]) -> list[str]:
    """The labelled copies that missed their bounds or the decision gate, and were not written."""
    lines = [
        f"**Refused, not written:** the {fmt} copy ({mode}) "
        + (
            f"missed its bounds on {entry['failed_clips']}."
            if entry["failed_clips"]
            else "missed the decision gate. " + _decision_line(mode, entry.get("decisions", {}))
        )
        for fmt, by_mode in md.get("refused", {}).items()
        for mode, entry in by_mode.items()
    ]
    return lines + ([""] if lines else [])


def _gpu_section(md: Mapping[str, Any], dirname: str) -> list[str]:
    """How to run the files on a GPU: what moves the weights, and what moves a ``.pt2``'s graph."""
    mode = next(iter(md["artifacts"]))
    lines = [
        "## On a GPU",
        "",
        "The TorchScript archives hold no device constant (the export replaces the ones tracing bakes "
        "in), so mapping the weights is enough; pass the inputs on the same device. A `.pt2` program "
        "names its capture device (the CPU) in its graph and must be moved whole.",
        "",
        "```python",
        f'art = w2vlab.load_artifact("{dirname}", "{mode}", device="cuda")  # embeddings come back on the CPU',
        f'model = torch.jit.load("{dirname}/{FILES["torchscript", mode]}", map_location="cuda")',
    ]
    if "exported" in format_entries(md, mode):
        lines += [
            "from torch.export.passes import move_to_device_pass",
            f'program = move_to_device_pass(torch.export.load("{dirname}/{FILES["exported", mode]}"), "cuda").module()',
        ]
    return lines + ["```", "", "ONNX files run on ONNX Runtime's CPU provider here, OpenVINO IR on OpenVINO's.", ""]


def _parity_table(md: Mapping[str, Any]) -> list[str]:
    """One Markdown row per file: mode, format, file, inputs, worst cosine, worst max|diff| (absolute and
    relative to max|ref|), the bounds it was held to, clips.  Metadata written before the bounds were
    relative has no relative value (shown as "-") and states its absolute bound."""
    lines = [
        "| mode | format | file | inputs | worst cosine | worst max abs diff | worst max abs diff / max abs ref "
        "| bounds (per clip) | clips |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, art in md["artifacts"].items():
        inputs = ", ".join(
            f"`{i['name']}` {i['shape']}" + (" (optional)" if i.get("optional") else "") for i in art["inputs"]
        )
        entries = format_entries(md, mode)
        for fmt in sorted(entries, key=FORMATS.index):
            p = entries[fmt]["parity"]
            rel = p.get("worst_max_rel_diff")
            bounds = _bounds_text(p).replace("|", "\\|")  # a table cell: escape the pipes of max|diff|
            lines.append(
                f"| {mode} | {fmt} | `{entries[fmt]['file']}` | {inputs} | {p['worst_cosine']:.9f} | "
                f"{p['worst_max_abs_diff']:.3g} | {'-' if rel is None else f'{rel:.3g}'} | "
                f"{bounds} | {p['n_clips']} |"
            )
    return lines


def _bounds_text(parity: Mapping[str, Any]) -> str:
    """What a file's parity summary bounded, in words: its ``bounded`` text, or for a summary written
    before it existed (bounds of absolute max|diff|, no ``max_rel_diff``), the bounds it then held."""
    if "bounded" in parity:
        return parity["bounded"]
    fields = {f.name for f in dataclasses.fields(ParityBounds)}
    old = {k: v for k, v in parity.get("bounds", {}).items() if k in fields}
    return ParityBounds(**{"max_rel_diff": None, **old}).bounded()
