"""The artifact's README.md: a model card rendered from its metadata."""

from __future__ import annotations

from typing import Any, Mapping

from .artifact import format_entries
from .formats import FORMATS

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

_WAVEFORM_SNIPPET = """\
```python
import torch
model = torch.jit.load("{dirname}/{file}").eval()
wave = torch.randn(1, 2 * {sr}) * 0.1  # [batch, samples] float32, {sr} Hz mono
with torch.inference_mode():
    embedding = model(wave)[0]  # [{dim}]; padded batch: model(waves, lengths)
```"""


def render_model_card(metadata: Mapping[str, Any], dirname: str = "w2vbert_speaker") -> str:
    """Markdown model card: what the artifact is, its inputs, extractor, parity, usage."""
    md, model = metadata, metadata["model"]
    enc = model["encoder_config"]
    pruned = "num_attention_heads_group" in enc
    lines = [
        "# W2V-BERT 2.0 speaker encoder (TorchScript)",
        "",
        f"Exported by w2vlab {md['versions']['w2vlab']} (format `{md['format']}`) with torch "
        f"{md['versions']['torch']} and transformers {md['versions']['transformers']}.",
        "",
        f"- Encoder: `Wav2Vec2BertModel`, {enc['num_hidden_layers']} conformer layers, hidden "
        f"{enc['hidden_size']}{', structured-pruning student' if pruned else ''}; "
        f"{model['parameters']:,} parameters in all.",
        f"- Head: {model['head']} (MFA adapters -> masked attentive statistics pooling -> bottleneck).",
        f"- Output: a {md['embedding_dim']}-d speaker embedding per clip; compare with cosine similarity.",
        f"- Audio: {md['sample_rate']} Hz mono; at least {md['min_num_samples']} samples "
        f"({md['min_duration_s'] * 1000:.0f} ms).",
        f"- Compiled by `torch.jit.{md['export']['path']}`"
        + (f" (script failed: {md['export']['script_error']})" if md["export"]["script_error"] else "") + ".",
        f"- Feature extractor: `feature_extractor/preprocessor_config.json` "
        f"({md['feature_extractor']['config'].get('feature_extractor_type')}, sha256 "
        f"`{md['feature_extractor']['sha256'][:12]}`).",
        "",
        "## Files and parity",
        "",
        "| mode | format | file | inputs | worst cosine | worst max abs diff | clips |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, art in md["artifacts"].items():
        inputs = ", ".join(f"`{i['name']}` {i['shape']}" + (" (optional)" if i.get("optional") else "") for i in art["inputs"])
        entries = format_entries(md, mode)
        for fmt in sorted(entries, key=FORMATS.index):
            p = entries[fmt]["parity"]
            lines.append(f"| {mode} | {fmt} | `{entries[fmt]['file']}` | {inputs} | {p['worst_cosine']:.9f} | "
                         f"{p['worst_max_abs_diff']:.3g} | {p['n_clips']} |")
    lines += [
        "",
        "Parity was measured after saving and reloading each file, against HF's feature "
        "extractor and the eager PyTorch model; per-clip numbers are in `parity.json`.",
        "",
        "## Usage (needs only torch and transformers)",
        "",
    ]
    sr, dim, fd = md["sample_rate"], md["embedding_dim"], md["feature_dim"]
    if "preprocessed" in md["artifacts"]:
        lines += [_PREPROCESSED_SNIPPET.format(dirname=dirname, file=md["artifacts"]["preprocessed"]["file"], sr=sr, dim=dim, fd=fd), ""]
        lines += ["For an odd number of 10 ms frames the extractor pads its last stacked row; run a "
                  "single clip on the valid rows only (as above) or pass the mask.", ""]
    if "waveform" in md["artifacts"]:
        lines += [_WAVEFORM_SNIPPET.format(dirname=dirname, file=md["artifacts"]["waveform"]["file"], sr=sr, dim=dim), ""]
    by_mode = {mode: format_entries(md, mode) for mode in md["artifacts"]}
    others = {fmt: {mode: entries[fmt]["file"] for mode, entries in by_mode.items() if fmt in entries}
              for fmt in FORMATS if fmt != "torchscript"}
    if any(others.values()):
        lines += ["## The `.pt2` and ONNX files", "",
                  "`w2vlab.load_artifact(dir, mode, format=\"exported\" | \"onnx\")` opens them with the checks and "
                  "call signature above. Without w2vlab, pass every input (the optional ones too) as float32 / int64; "
                  "a waveform program needs at least two feature rows (720 samples at 16 kHz).", ""]
        names = {mode: [i["name"] for i in art["inputs"]] for mode, art in md["artifacts"].items()}
        for mode, file in others["exported"].items():
            lines += [f"```python\nprogram = torch.export.load(\"{dirname}/{file}\").module()\n"
                      f"embedding = program({', '.join(names[mode])})  # [batch, {dim}]\n```", ""]
        if others["onnx-int8"]:
            lines += ["The `_int8.onnx` files are dynamic-int8 copies (MatMul weights int8 per channel): smaller "
                      "and faster on CPU, verified to cosine >= 0.999 against eager, not bit-exact.", ""]
        for mode, file in [*others["onnx"].items(), *others["onnx-int8"].items()]:
            feeds = ", ".join(f'"{n}": {n}.numpy()' for n in names[mode])
            lines += [f"```python\nimport onnxruntime as ort\nsession = ort.InferenceSession(\"{dirname}/{file}\")\n"
                      f"embedding = session.run([\"embedding\"], {{{feeds}}})[0]  # [batch, {dim}]\n```", ""]
    lines += [
        "## Security",
        "",
        "A TorchScript archive is a program: `torch.jit.load` runs its code (a `.pt2` is loaded with "
        "`torch.export.load`, an ONNX graph run by ONNX Runtime: trust their source the same way). Load archives only "
        "from sources you trust; `w2vlab info` checks the embedded metadata against `metadata.json` "
        "and the weights hash before use.",
        "",
    ]
    return "\n".join(lines)
