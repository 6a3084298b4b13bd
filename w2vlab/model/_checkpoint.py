"""Reading checkpoints: a local HF encoder folder plus a speaker-head checkpoint.  Never a hub.

Layouts understood:

* base encoder: a folder with ``config.json`` + ``model.safetensors`` (optional
  ``preprocessor_config.json``), or a bare ``.safetensors`` file plus a config JSON;
* speaker checkpoint: ``.safetensors`` with ``adapter_layers.*``, ``pooling.attention.*``,
  ``bottleneck.*`` (and optionally fine-tuned ``encoder.*`` weights), or the reference work's
  ``.pth`` layout ``{"modules": {"spk_model": state_dict}}`` with ``front.encoder.*`` keys,
  read with ``torch.load(..., weights_only=True)`` only.  Unmerged LoRA pairs are merged;
* a WeSpeaker model or experiment directory: ``config.yaml`` + ``avg_model.pt`` (or
  ``models/avg_model.pt``, or ``checkpoint=.../model_N.pt``), mapped by :mod:`w2vlab.model._wespeaker`;
* an HF ``Trainer`` folder whose ``config.json`` names ``Wav2Vec2BertForXVector`` or
  ``Wav2Vec2BertForSequenceClassification``: the stock class, see :mod:`w2vlab.model._hf_heads`.

Loading is strict by default: missing, unexpected and mis-shaped keys are listed in a
:class:`LoadReport` and raise :class:`CheckpointMismatchError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from w2vlab._contract import InputError
from w2vlab._features import FeatureConfig
from w2vlab.model import _hf_heads, _wespeaker
from w2vlab.model._config import W2VBERT_PREPROCESSOR, HeadConfig, merge_config, normalise_pruning
from w2vlab.model._encoder import SpeakerEncoder, build_encoder, count_parameters

logger = logging.getLogger(__name__)

HEAD_PREFIXES = ("adapter_layers.", "pooling.", "bottleneck.")
HEAD_WEIGHTS, HEAD_CONFIG = "speaker_head.safetensors", "speaker_head.json"
# LoRA scale alpha / r of the reference recipe (r=64, lora_alpha=128), used when none is given.
REFERENCE_LORA_SCALING = 2.0


class CheckpointMismatchError(InputError):
    """The checkpoint's keys or shapes do not match the model built from the config."""


@dataclass
class LoadReport:
    """What strict loading found; ``str()`` is the readable report."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "key: checkpoint (a, b) vs model (c, d)"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        if self.ok:
            return "all keys matched"
        lines = []
        for title, keys in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("shape mismatch", self.mismatched),
        ):
            if keys:
                shown = "\n    ".join(keys[:20]) + (f"\n    ... and {len(keys) - 20} more" if len(keys) > 20 else "")
                lines.append(f"  {title} ({len(keys)}):\n    {shown}")
        return "\n".join(lines)


@dataclass
class LoadedModel:
    """A loaded speaker encoder and the facts an export records about where it came from."""

    model: SpeakerEncoder  # or an HFSpeakerHead (a transformers speaker head)
    encoder_config: dict[str, Any]  # normalised HF config dict, pruning fields included
    head: HeadConfig  # or an HFHead
    notes: list[str]  # every normalisation applied to the config
    source_sha256: dict[str, str]  # file name -> sha256 of the weights read
    preprocessor_config: dict[str, Any] | None  # the checkpoint's preprocessor_config.json, if any
    parameters: int = 0  # parameter count of the model
    source: dict[str, Any] | None = None  # another toolkit's checkpoint: toolkit, config fields, file, sha256
    min_num_samples: int | None = None  # shortest clip the model embeds, where longer than the extractor's minimum
    files: dict[str, bytes] = field(default_factory=dict)  # written beside the programs (an HF classifier)


def feature_extractor_for(loaded: LoadedModel) -> Any:
    """The checkpoint's ``SeamlessM4TFeatureExtractor`` (its ``preprocessor_config.json``), else w2v-bert-2.0's."""
    from transformers import SeamlessM4TFeatureExtractor

    return SeamlessM4TFeatureExtractor(**(loaded.preprocessor_config or W2VBERT_PREPROCESSOR))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise InputError(f"could not read JSON from {path}: {e}") from e


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file into freshly allocated tensors, one tensor at a time.

    ``safetensors.torch.load_file`` maps the file and returns views into the mapping: resident
    memory then holds the mapped pages *and* any copy, and the views sit at unaligned
    addresses.  Reading each tensor straight into its own allocation keeps one copy of the
    weights in memory, aligned like every other tensor.
    """
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if not 2 <= header_len <= size - 8:
                raise InputError(f"header length {header_len} does not fit a {size}-byte file")
            header = json.loads(f.read(header_len))
            base, out = 8 + header_len, {}
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                tensor = torch.empty(info["shape"], dtype=_SAFETENSORS_DTYPES[info["dtype"]])
                start, end = info["data_offsets"]
                buffer = tensor.reshape(-1).view(torch.uint8).numpy()  # writable bytes of the tensor
                if end - start != buffer.nbytes or base + end > size:
                    raise InputError(
                        f"{name}: {end - start} bytes at offset {start} for shape {info['shape']} "
                        f"{info['dtype']}, file is {size} bytes (truncated?)"
                    )
                f.seek(base + start)
                if f.readinto(buffer) != buffer.nbytes:
                    raise InputError(f"{name}: file ends inside the tensor data (truncated?)")
                out[name] = tensor
    except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not a readable safetensors file: {e!r}") from e
    return out


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a ``.pt/.pth`` file read with ``weights_only=True``.

    A ``.pth`` in the reference layout ``{"modules": {"spk_model": ...}}`` is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch reports a refused object as an UnpicklingError naming weights_only
        if "weights_only" not in str(e) and "Weights only" not in str(e):
            raise InputError(f"{path} is not a readable torch checkpoint: {e}") from e
        raise InputError(
            f"{path} holds Python objects beyond tensors, and w2vlab never unpickles arbitrary "
            f"objects (weights_only=True refused it: {str(e).splitlines()[0]}). If you trust the file, "
            f"convert it once in a separate session: load it with full unpickling, take "
            f"['modules']['spk_model'], write that with safetensors.torch.save_file, and load the "
            f".safetensors file instead."
        ) from e
    if isinstance(obj, Mapping) and "modules" in obj:
        obj = obj["modules"]
        obj = obj.get("spk_model", obj) if isinstance(obj, Mapping) else obj
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(
            f"{path} does not hold a state dict of tensors (found {type(obj).__name__}); expected "
            f"a mapping name -> tensor, or the reference layout {{'modules': {{'spk_model': state_dict}}}}"
        )
    return dict(obj)


def _rename(key: str) -> str:
    """Map reference/PEFT key spellings onto ``SpeakerEncoder`` keys."""
    if key.startswith("front.encoder."):
        key = "encoder." + key[len("front.encoder.") :]
    return key.replace("base_model.model.", "").replace(".base_layer.", ".")


def merge_lora(state: dict[str, torch.Tensor], scaling: float | None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Fold unmerged LoRA pairs into their base weights: W += scaling * B @ A."""
    pairs = sorted(k[: k.index(".lora_A")] for k in state if ".lora_A" in k)
    if not pairs:
        return state, []
    if scaling is None:
        scaling = REFERENCE_LORA_SCALING
        warnings.warn(
            f"checkpoint holds {len(pairs)} unmerged LoRA pairs and no lora_scaling was given; "
            f"assuming the reference recipe's alpha/r = 128/64 = {scaling}",
            stacklevel=3,
        )
    out = {k: v for k, v in state.items() if ".lora_A" not in k and ".lora_B" not in k}
    for base in pairs:
        a = next(v for k, v in state.items() if k.startswith(base + ".lora_A"))  # (r, in)
        b = next(v for k, v in state.items() if k.startswith(base + ".lora_B"))  # (out, r)
        out[base + ".weight"] = out[base + ".weight"] + scaling * (b.float() @ a.float()).to(
            out[base + ".weight"].dtype
        )
    return out, [f"merged {len(pairs)} LoRA pairs (scaling {scaling})"]


def infer_head_config(state: Mapping[str, torch.Tensor], num_hidden_layers: int) -> HeadConfig:
    """Head hyper-parameters read off the head's tensor shapes."""
    try:
        n_mfa = len({k.split(".")[1] for k in state if k.startswith("adapter_layers.")})
        head = HeadConfig(
            n_mfa_layers=-1 if n_mfa == num_hidden_layers + 1 else n_mfa,
            adapter_dim=state["adapter_layers.0.0.weight"].shape[0],
            attention_channels=state["pooling.attention.0.weight"].shape[0],
            embedding_dim=state["bottleneck.weight"].shape[0],
        )
    except KeyError as e:
        raise CheckpointMismatchError(
            f"the speaker checkpoint has no {e.args[0]!r}; expected adapter_layers.*, "
            f"pooling.attention.* and bottleneck.* keys"
        ) from e
    return head


def load_into(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], strict: bool = True, assign: bool = False
) -> LoadReport:
    """Load ``state`` into ``model``; with ``strict`` any mismatch raises with the full report.

    ``assign`` makes the model take the checkpoint's tensors instead of copying them (for a
    model built on the meta device: no second copy of the weights is ever allocated).
    """
    own = model.state_dict()
    report = LoadReport(
        missing=sorted(k for k in own if k not in state),
        unexpected=sorted(k for k in state if k not in own),
        mismatched=sorted(
            f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            for k, v in state.items()
            if k in own and v.shape != own[k].shape
        ),
    )
    if strict and not report.ok:
        raise CheckpointMismatchError(f"checkpoint does not match the model:\n{report}")
    bad = {m.split(":")[0] for m in report.mismatched}
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in bad}, strict=False, assign=assign)
    return report


def _realign(model: torch.nn.Module, alignment: int = 64) -> None:
    """Copy tensors that sit at unaligned addresses (e.g. views into a shared ``.pth`` storage).

    CPU kernels pick code paths by alignment, and those paths round differently (6e-8 on the
    pruned demo when its weights were views into a mapped file): an exported archive allocates
    its tensors aligned, so the eager reference must too for parity to be exact.
    :func:`read_safetensors` already allocates every tensor; this covers the other sources.
    """
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.numel() and tensor.data_ptr() % alignment:
                tensor.data = tensor.data.clone()


def _build_and_load(
    encoder_config: Mapping[str, Any], head: HeadConfig, state: Mapping[str, torch.Tensor], strict: bool
) -> tuple[SpeakerEncoder, LoadReport]:
    """Build the model and load ``state``, without random init or a second copy when strict.

    A strict load fills every persistent tensor, so the model is built on the meta device and
    takes the (memory-mapped) checkpoint tensors as they are: peak memory stays near one copy
    of the weights.  Non-persistent buffers (e.g. rotary tables) are not in any checkpoint, so
    a model that has them, or a non-strict load, is built and initialised on the CPU instead.
    """
    if strict:
        with torch.device("meta"):
            model = SpeakerEncoder(build_encoder(encoder_config), head)
        report = load_into(model, state, strict=True, assign=True)
        if not any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
            _realign(model)
            return model, report
    model = SpeakerEncoder(build_encoder(encoder_config), head)
    return model, load_into(model, state, strict=strict)


def _resolve_encoder(model_path: Path, config: str | Path | Mapping[str, Any] | None):
    """(weights file, base config dict, override dict, preprocessor config or None)."""
    if not model_path.exists():
        raise FileNotFoundError(f"model path not found: {model_path}")
    override = read_json(config) if isinstance(config, (str, Path)) else dict(config or {})
    if model_path.is_dir():
        weights = model_path / "model.safetensors"
        if not weights.is_file():
            found = sorted(p.name for p in model_path.iterdir())[:10]
            raise FileNotFoundError(
                f"{model_path} has no model.safetensors (found: {found}); expected an HF-format "
                f"folder with config.json + model.safetensors"
            )
        if not (model_path / "config.json").is_file():
            raise FileNotFoundError(f"{model_path} has model.safetensors but no config.json")
        base = read_json(model_path / "config.json")
        pre = model_path / "preprocessor_config.json"
        return weights, base, override, read_json(pre) if pre.is_file() else None
    if model_path.suffix != ".safetensors":
        raise InputError(f"model path {model_path} is neither an HF folder nor a .safetensors file")
    if not override:
        raise InputError(f"a bare weights file ({model_path.name}) needs config=... (its config.json)")
    return model_path, {}, override, None


def load_speaker_encoder(
    model_path: str | Path,
    checkpoint: str | Path | None = None,
    config: str | Path | Mapping[str, Any] | None = None,
    *,
    strict: bool = True,
    lora_scaling: float | None = None,
    pooling: str | None = None,
) -> LoadedModel:
    """Build the speaker encoder from local files, in eval mode.

    Args:
        model_path: HF folder (``config.json`` + ``model.safetensors``), a bare ``.safetensors``,
            or a WeSpeaker model/experiment directory (``config.yaml`` + ``avg_model.pt``).
        checkpoint: speaker checkpoint (``.safetensors`` or reference ``.pth``); default: the
            folder's ``speaker_head.safetensors``.  WeSpeaker: e.g. ``models/model_N.pt``;
            default ``avg_model.pt``, else ``models/avg_model.pt``.
        config: override JSON (path or dict) merged over the folder's ``config.json``; for a
            bare weights file, or a WeSpeaker ``model_name`` that is no local folder, the full config.
        strict: raise on missing / unexpected / mis-shaped keys (default).
        lora_scaling: alpha / r for unmerged LoRA pairs (default: the reference recipe's 2.0);
            a WeSpeaker directory takes it from ``config.yaml`` instead.
        pooling: ``"toolkit"`` or ``"masked"`` (:data:`w2vlab._contract.POOLINGS`); default: as the
            checkpoint's toolkit pools, :func:`default_pooling`.  HF heads pool HF's own way ("masked").

    A folder whose ``config.json`` names ``Wav2Vec2BertForXVector`` or ``Wav2Vec2BertForSequenceClassification``
    loads the stock ``transformers`` class (:mod:`w2vlab.model._hf_heads`); ``checkpoint`` then names
    another ``.safetensors`` of the same model (default: the folder's ``model.safetensors``).
    """
    model_path = Path(model_path)
    if _wespeaker.is_wespeaker_dir(model_path):
        if lora_scaling is not None:
            raise InputError(
                f"{model_path} is a WeSpeaker directory: its LoRA scale is lora_alpha / r of "
                f"{_wespeaker.CONFIG_FILE}'s dataset_args.w2vbert_args.lora_config_args; leave lora_scaling out"
            )
        return _load_wespeaker(model_path, checkpoint, config, strict, pooling)
    architecture = _hf_heads.architecture_of(model_path)
    if architecture is not None:
        if lora_scaling is not None:
            raise InputError(f"{model_path} holds a {architecture}, whose weights are merged; leave lora_scaling out")
        if pooling not in (None, "masked"):
            raise InputError(
                f"{model_path} holds a {architecture}, which pools by the extractor's mask as transformers does; "
                f"pooling={pooling!r} does not apply (leave it out)"
            )
        return _load_hf_head(model_path, architecture, checkpoint, config, strict)
    weights, base, override, preprocessor = _resolve_encoder(model_path, config)
    state = {"encoder." + k: v for k, v in read_state_dict(weights).items()}
    hashes = {weights.name: sha256_file(weights)}

    if checkpoint is None and model_path.is_dir() and (model_path / HEAD_WEIGHTS).is_file():
        checkpoint = model_path / HEAD_WEIGHTS
    if checkpoint is None:
        raise FileNotFoundError(
            f"no speaker head: {model_path} has no {HEAD_WEIGHTS}; pass checkpoint=... "
            f"(a .safetensors or reference .pth with adapter_layers/pooling/bottleneck weights)"
        )
    checkpoint = Path(checkpoint)
    head_state, notes = merge_lora({_rename(k): v for k, v in read_state_dict(checkpoint).items()}, lora_scaling)
    state.update(head_state)  # fine-tuned encoder weights in the checkpoint win over the base
    state = _float32(state)
    hashes[checkpoint.name] = sha256_file(checkpoint)

    encoder_config, pruning_notes = normalise_pruning(
        merge_config(base, override), {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    )
    notes += pruning_notes
    head = infer_head_config(state, encoder_config["num_hidden_layers"])
    head_json = checkpoint.with_name(HEAD_CONFIG)
    declared = HeadConfig.load(head_json) if head_json.is_file() else None
    if declared is not None and dataclasses.replace(declared, pooling=head.pooling) != head:
        raise CheckpointMismatchError(f"{head_json} says {declared} but the weights say {head}")
    head = dataclasses.replace(head, pooling=pooling or default_pooling(checkpoint, declared))

    model, report = _build_and_load(encoder_config, head, state, strict)
    _log_load(report, checkpoint, notes)
    return LoadedModel(model.eval(), encoder_config, head, notes, hashes, preprocessor, count_parameters(model))


def default_pooling(checkpoint: Path, declared: HeadConfig | None = None) -> str:
    """How a checkpoint's own toolkit pools: what its ``speaker_head.json`` declares; else ``"toolkit"``
    for the reference ``.pth`` layout (its recipe pools the half row), ``"masked"`` for w2vlab's
    ``.safetensors`` head.  WeSpeaker directories are ``"toolkit"`` (:func:`_load_wespeaker`)."""
    if declared is not None:
        return declared.pooling
    return "masked" if checkpoint.suffix == ".safetensors" else "toolkit"


def _float32(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() and v.dtype != torch.float32 else v for k, v in state.items()}


def _log_load(report: LoadReport, checkpoint: Path, notes: list[str]) -> None:
    """Log a non-strict load's report and every note (appending the load's own note to ``notes``)."""
    if not report.ok:
        logger.warning("non-strict load of %s:\n%s", checkpoint, report)
        notes.append(
            f"non-strict load: {len(report.missing)} missing, {len(report.unexpected)} unexpected, "
            f"{len(report.mismatched)} mis-shaped keys"
        )
    for note in notes:
        logger.info("config normalisation: %s", note)


def _fill_masked_spec_embed(state: dict[str, torch.Tensor], encoder_config: Mapping[str, Any]) -> list[str]:
    """WeSpeaker deletes the encoder's training-only ``masked_spec_embed`` (H,); give the model zeros for it."""
    from transformers import Wav2Vec2BertConfig

    cfg = Wav2Vec2BertConfig(**dict(encoder_config))
    key = "encoder.masked_spec_embed"
    if key in state or not (cfg.mask_time_prob > 0 or cfg.mask_feature_prob > 0):
        return []
    state[key] = torch.zeros(cfg.hidden_size)
    return ["masked_spec_embed: absent (WeSpeaker removes this training-only vector), set to zeros"]


def _load_wespeaker(
    model_dir: Path,
    checkpoint: str | Path | None,
    config: str | Path | Mapping[str, Any] | None,
    strict: bool,
    pooling: str | None = None,
) -> LoadedModel:
    """A WeSpeaker ``W2VBert_Adapter_MFA`` directory: ``config.yaml`` + its checkpoint (see ``_wespeaker``)."""
    ws = _wespeaker.read_config(model_dir / _wespeaker.CONFIG_FILE)
    override = read_json(config) if isinstance(config, (str, Path)) else dict(config or {})
    base, preprocessor, notes = _wespeaker.resolve_encoder(ws, model_dir, bool(override))
    checkpoint = Path(checkpoint) if checkpoint is not None else _wespeaker.default_checkpoint(model_dir)
    mapped, dropped = _wespeaker.map_state(read_state_dict(checkpoint), ws)
    state, merged = merge_lora({_rename(k): v for k, v in mapped.items()}, ws.lora_scaling if ws.use_lora else None)
    state = _float32(state)
    encoder_config, pruning_notes = normalise_pruning(
        merge_config(base, override), {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    )
    _wespeaker.check_encoder(ws, encoder_config)
    notes += dropped + merged + pruning_notes + _fill_masked_spec_embed(state, encoder_config)
    head = dataclasses.replace(ws.head, pooling=pooling or "toolkit")  # WeSpeaker's ASP pools every row
    try:
        model, report = _build_and_load(encoder_config, head, state, strict)
    except CheckpointMismatchError as e:
        raise CheckpointMismatchError(
            f"the WeSpeaker checkpoint {checkpoint.name} does not fit the model {_wespeaker.CONFIG_FILE} describes "
            f"(its frontend.encoder.* keys are named encoder.* below): {e}"
        ) from e
    _log_load(report, checkpoint, notes)
    sha = sha256_file(checkpoint)
    source = _wespeaker.source_record(ws, sha256_file(model_dir / _wespeaker.CONFIG_FILE), checkpoint, sha)
    return LoadedModel(
        model.eval(),
        encoder_config,
        head,
        notes,
        {checkpoint.name: sha},
        preprocessor,
        count_parameters(model),
        source,
    )


def _load_hf_head(
    model_path: Path,
    architecture: str,
    checkpoint: str | Path | None,
    config: str | Path | Mapping[str, Any] | None,
    strict: bool,
) -> LoadedModel:
    """A ``transformers`` speaker head saved by ``save_pretrained`` (see :mod:`w2vlab.model._hf_heads`)."""
    weights, raw, override, preprocessor = _resolve_encoder(model_path, config)
    weights = Path(checkpoint) if checkpoint is not None else weights
    raw = merge_config(raw, override)
    cfg = _hf_heads.build_config(raw)
    state, notes = _hf_heads.select_state(read_state_dict(weights), architecture)
    floats = _float32(state)
    if any(floats[k].dtype != v.dtype for k, v in state.items()):
        notes.append("weights converted to float32")
    if preprocessor is None:
        notes.append(f"{model_path.name} has no preprocessor_config.json: w2v-bert-2.0's feature extractor assumed")
    hf, report = _build_and_load_hf(architecture, cfg, floats, strict)
    _log_load(report, weights, notes)
    files, classifier = {}, None
    if architecture == _hf_heads.SEQUENCE_CLASSIFICATION:
        data, classifier = _hf_heads.classifier_file(hf)
        files[_hf_heads.CLASSIFIER_FILE] = data
    minimum = _hf_heads.min_num_samples(
        architecture, cfg, FeatureConfig.from_dict(preprocessor or W2VBERT_PREPROCESSOR)
    )
    hashes = {
        weights.name: sha256_file(weights),
        _hf_heads.CONFIG_FILE: sha256_file(model_path / _hf_heads.CONFIG_FILE),
    }
    model = _hf_heads.HFSpeakerHead(hf, architecture).eval()
    return LoadedModel(
        model,
        raw,
        _hf_heads.head_record(architecture, cfg, minimum, classifier),
        notes,
        {weights.name: hashes[weights.name]},
        preprocessor,
        count_parameters(model),
        _hf_heads.source_record(architecture, raw, hashes, weights.name),
        minimum,
        files,
    )


def _build_and_load_hf(
    architecture: str, cfg: Any, state: Mapping[str, torch.Tensor], strict: bool
) -> tuple[torch.nn.Module, LoadReport]:
    """The stock model with ``state`` loaded: on the meta device, taking the tensors, when strict (as
    :func:`_build_and_load`); on the CPU, initialised, when not strict or a buffer is not in the file."""
    if strict:
        with torch.device("meta"):
            hf = _hf_heads.build_model(architecture, cfg)
        report = load_into(hf, state, strict=True, assign=True)
        if not any(t.is_meta for t in [*hf.parameters(), *hf.buffers()]):
            _realign(hf)
            return hf, report
    hf = _hf_heads.build_model(architecture, cfg)
    return hf, load_into(hf, state, strict=strict)
