"""TorchScript export: wrap, script or trace, save, reload, verify — then write atomically.

``torch.jit.script`` cannot compile HF's ``Wav2Vec2BertModel`` (on torch 2.13 it stops at
``Failed to get source for Wav2Vec2BertConfig.__init__``), so the encoder core is traced with
a padded two-clip example of an unusual length, and a small *scripted* wrapper around the
traced core keeps what tracing cannot: the optional mask, input checks, clear errors.

Nothing is written until the saved archive has been reloaded and matched the eager model on
the parity suite; a failed export raises :class:`ExportParityError` and leaves any previous
artifact byte-identical.  TorchScript's own DeprecationWarnings (torch >= 2.9 deprecates it in
favour of ``torch.export``) are captured and recorded, not shown.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import logging
import platform
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
import transformers
from torch import nn
from transformers import SeamlessM4TFeatureExtractor

from . import __version__
from .atomic import atomic_directory
from .checkpoint import LoadedModel, load_speaker_encoder
from .demo import W2VBERT_PREPROCESSOR
from .features import FeatureConfig, TorchFeatureExtractor
from .parity import ParityBounds, ParityReport, compare, merge_reports
from .suite import DEFAULT_LENGTHS, Case, build_suite, embed_cases, hf_features, run_suite, waveform_batch

logger = logging.getLogger(__name__)

FORMAT_TAG = "w2vlab-artifact/1"
MODES = ("preprocessed", "waveform")
ARTIFACT_FILES = {mode: f"w2vbert_speaker_script_{mode}.pt" for mode in MODES}
EXTRACTOR_DIR = "feature_extractor"
DEFAULT_OUTPUT = Path("artifacts/w2vbert_speaker")
# Example input for tracing: two clips, the second padded, of a length no default uses.
TRACE_FRAMES, TRACE_VALID = 123, 77


class ExportParityError(RuntimeError):
    """The reloaded artifact did not match the eager model; ``report`` says where."""

    def __init__(self, *failed: ParityReport):
        self.reports = failed
        self.report = failed[0]
        where = "; ".join(f"{r.label}: {list(r.failures)}" for r in failed)
        super().__init__(f"export refused: reloaded artifact failed parity on {where}\n" + "\n\n".join(map(str, failed)))


class _Core(nn.Module):
    """What gets traced: (features [B, T, F], mask [B, T]) -> embeddings [B, D], mask required."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_features, attention_mask)


class PreprocessedSpeakerEncoder(nn.Module):
    """Artifact entry point: HF input features [B, T, 160] (+ optional mask [B, T]) -> [B, D]."""

    def __init__(self, core: nn.Module, feature_dim: int):
        super().__init__()
        self.core = core
        self.feature_dim = feature_dim

    def forward(self, input_features: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if input_features.dim() != 3 or input_features.size(2) != self.feature_dim:
            raise ValueError(
                f"input_features must be [batch, frames, {self.feature_dim}]; got shape {list(input_features.shape)}"
                f" (a single clip from the feature extractor needs .unsqueeze(0))"
            )
        if input_features.size(1) < 1:
            raise ValueError("input_features has 0 frames; the clip is too short to embed")
        if attention_mask is None:
            attention_mask = torch.ones(input_features.shape[:2], dtype=torch.long, device=input_features.device)
        elif attention_mask.shape != input_features.shape[:2]:
            raise ValueError(
                f"attention_mask must be [batch, frames] = {list(input_features.shape[:2])}; "
                f"got shape {list(attention_mask.shape)}"
            )
        return self.core(input_features.float(), attention_mask.long())


class WaveformSpeakerEncoder(nn.Module):
    """Artifact entry point: waveforms [B, N] at the extractor's rate (+ lengths [B]) -> [B, D]."""

    def __init__(self, frontend: nn.Module, core: nn.Module):
        super().__init__()
        self.frontend = frontend
        self.core = core

    def forward(self, waveform: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        input_features, attention_mask = self.frontend(waveform, lengths)
        return self.core(input_features, attention_mask)


@dataclass
class TraceInfo:
    """How the core was compiled, for the metadata."""

    path: str  # "script" or "trace"
    script_error: str = ""  # why torch.jit.script was not used
    example_shape: tuple[int, ...] = ()
    example_valid_frames: tuple[int, ...] = ()
    warnings: list[str] = field(default_factory=list)  # non-deprecation warnings seen while compiling


def _kept(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """Warnings worth recording: not TorchScript's own deprecation, not libraries' FutureWarnings."""
    return sorted({f"{w.category.__name__}: {w.message}" for w in caught
                   if not (issubclass(w.category, DeprecationWarning) and "torch.jit" in str(w.message))
                   and not issubclass(w.category, FutureWarning)})


def try_script(module: nn.Module) -> tuple[Optional[torch.jit.ScriptModule], str]:
    """``(torch.jit.script(module), "")``, or ``(None, why)`` when TorchScript cannot compile it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)  # library notices hit while TorchScript probes attributes
        try:
            return torch.jit.script(module), ""
        except Exception as e:  # TorchScript raises many types (OSError, NotSupportedError, RuntimeError)
            return None, re.sub(r" at 0x[0-9a-f]+", "", f"{type(e).__name__}: {str(e).splitlines()[0]}")


def compile_core(model: nn.Module, feature_dim: int) -> tuple[torch.jit.ScriptModule, TraceInfo]:
    """Script the core if TorchScript can compile it, else trace it on a padded example."""
    core = _Core(model).eval()
    scripted, reason = try_script(core)
    if scripted is not None:
        return scripted, TraceInfo("script")
    logger.info("torch.jit.script failed (%s); tracing instead", reason)
    g = torch.Generator().manual_seed(0)
    example = torch.randn(2, TRACE_FRAMES, feature_dim, generator=g)
    mask = torch.ones(2, TRACE_FRAMES, dtype=torch.long)
    mask[1, TRACE_VALID:] = 0
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        traced = torch.jit.trace(core, (example, mask), check_trace=False)
    return traced, TraceInfo("trace", reason, tuple(example.shape), (TRACE_FRAMES, TRACE_VALID), _kept(caught))


def script_module(module: nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        return torch.jit.script(module)


def feature_extractor_for(loaded: LoadedModel) -> SeamlessM4TFeatureExtractor:
    """The checkpoint's extractor (its ``preprocessor_config.json``), else w2v-bert-2.0's."""
    return SeamlessM4TFeatureExtractor(**(loaded.preprocessor_config or W2VBERT_PREPROCESSOR))


def wrap(mode: str, core: torch.jit.ScriptModule, fe: SeamlessM4TFeatureExtractor) -> torch.jit.ScriptModule:
    """The scripted artifact module for ``mode`` around the compiled core."""
    if mode == "preprocessed":
        return script_module(PreprocessedSpeakerEncoder(core, fe.feature_size * fe.stride))
    if mode == "waveform":
        frontend = TorchFeatureExtractor(FeatureConfig.from_extractor(fe)).eval()
        return script_module(WaveformSpeakerEncoder(frontend, core))
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


def save_module(module: torch.jit.ScriptModule, path: Path, extra_files: Mapping[str, str]) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        torch.jit.save(module, str(path), _extra_files=dict(extra_files))


def load_module(path: Path, extra_names: Sequence[str] = ()) -> tuple[torch.jit.ScriptModule, dict[str, str]]:
    extra = {name: "" for name in extra_names}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module.eval(), {k: v.decode() if isinstance(v, bytes) else v for k, v in extra.items()}


def candidate_fn(mode: str, artifact: torch.jit.ScriptModule, fe: SeamlessM4TFeatureExtractor):
    """Embed a :class:`Case` with an artifact, feeding it what its mode takes."""
    if mode == "preprocessed":
        return lambda case: artifact(*[x for x in hf_features(fe, case) if x is not None])
    return lambda case: artifact(*waveform_batch(case))


def reference_fn(model: nn.Module, fe: SeamlessM4TFeatureExtractor):
    """Embed a :class:`Case` with the eager model on the HF extractor's features."""
    return lambda case: model(*hf_features(fe, case))


def verify(
    mode: str,
    artifact: torch.jit.ScriptModule,
    model: nn.Module,
    fe: SeamlessM4TFeatureExtractor,
    cases: Sequence[Case],
    bounds: ParityBounds = ParityBounds(),
    progress: bool = True,
    label: str = "",
) -> ParityReport:
    """Parity of ``artifact`` (any callable with the artifact's signature for ``mode``) against
    HF extractor + eager ``model`` on ``cases``."""
    return run_suite(cases, reference_fn(model, fe), candidate_fn(mode, artifact, fe),
                     progress=progress, label=f"{label or mode} vs eager", bounds=bounds)


def _fingerprint(module: torch.jit.ScriptModule) -> tuple[str, str]:
    """What makes two archives the same program: the inlined graph and the weights."""
    return str(module.inlined_graph), state_sha256(module)


def canonical_sha256(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def state_sha256(module: nn.Module) -> str:
    """Hash of a module's tensors (names, dtypes, shapes, bytes): identifies the weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _io_spec(mode: str, fe: SeamlessM4TFeatureExtractor, embd_dim: int) -> dict[str, Any]:
    feature_dim = fe.feature_size * fe.stride
    if mode == "preprocessed":
        inputs = [
            {"name": "input_features", "shape": ["batch", "frames", feature_dim], "dtype": "float32"},
            {"name": "attention_mask", "shape": ["batch", "frames"], "dtype": "int64", "optional": True},
        ]
    else:
        inputs = [
            {"name": "waveform", "shape": ["batch", "samples"], "dtype": "float32", "sample_rate": fe.sampling_rate},
            {"name": "lengths", "shape": ["batch"], "dtype": "int64", "optional": True},
        ]
    return {"inputs": inputs, "output": {"name": "embedding", "shape": ["batch", embd_dim], "dtype": "float32"}}


def build_metadata(
    loaded: LoadedModel,
    fe: SeamlessM4TFeatureExtractor,
    info: TraceInfo,
    reports: Mapping[str, ParityReport],
    weights_sha256: str,
    formats: Mapping[str, Mapping[str, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Everything a consumer needs to trust and use the artifact.  No paths, no user names.

    ``formats`` maps mode -> format -> that file's entry (file, parity, content_sha256) for the
    formats written beside the TorchScript archive."""
    fe_config = json.loads(fe.to_json_string())
    min_samples = FeatureConfig.from_extractor(fe).min_num_samples
    return {
        "format": FORMAT_TAG,
        "artifacts": {
            mode: {"file": ARTIFACT_FILES[mode], **_io_spec(mode, fe, loaded.head.embd_dim),
                   "parity": reports[mode].summary(),
                   "formats": {"torchscript": {"file": ARTIFACT_FILES[mode], "parity": reports[mode].summary(),
                                               "content_sha256": weights_sha256},
                               **(formats or {}).get(mode, {})}}
            for mode in reports
        },
        "sample_rate": fe.sampling_rate,
        "feature_dim": fe.feature_size * fe.stride,
        "embedding_dim": loaded.head.embd_dim,
        "min_num_samples": min_samples,
        "min_duration_s": min_samples / fe.sampling_rate,
        "export": {
            "path": info.path,
            "script_error": info.script_error,
            "trace_example_shape": list(info.example_shape),
            "trace_example_valid_frames": list(info.example_valid_frames),
            "compile_warnings": info.warnings,
        },
        "versions": {
            "w2vlab": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "feature_extractor": {"config": fe_config, "sha256": canonical_sha256(fe_config)},
        "model": {
            "encoder_config": loaded.encoder_config,
            "encoder_config_sha256": canonical_sha256(loaded.encoder_config),
            "head": loaded.head.to_dict(),
            "parameters": loaded.parameters,
            "config_notes": loaded.notes,
            "weights_sha256": weights_sha256,
        },
        "source_weights_sha256": loaded.source_sha256,
    }


@dataclass
class ExportResult:
    output: Path
    metadata: dict[str, Any]
    reports: dict[str, ParityReport]  # TorchScript, per mode
    seconds: float
    format_reports: dict[str, dict[str, ParityReport]] = field(default_factory=dict)  # other format -> mode -> report

    @property
    def report(self) -> ParityReport:
        """The TorchScript reports of every mode merged into one."""
        return merge_reports(list(self.reports.values()), label="export parity")

    @property
    def all_reports(self) -> list[ParityReport]:
        """TorchScript's per mode, then each other format's (their bounds may differ: not merged)."""
        return [*self.reports.values(), *(r for by_mode in self.format_reports.values() for r in by_mode.values())]


def _write_formats(model: nn.Module, mode: str, fe: SeamlessM4TFeatureExtractor, formats: Sequence[str], tmp: Path) -> None:
    """Write ``mode``'s files for ``formats`` (among exported, onnx, onnx-int8) into ``tmp``.

    One ``torch.export`` capture serves the ``.pt2`` and the ONNX file; the int8 copy is
    quantised from the fp32 ONNX file, written under a hidden name and removed if not asked for.
    """
    from . import formats as fmts

    program = None
    for fmt in formats:
        logger.info("writing the %s %s file", mode, fmt)
        path = tmp / fmts.FORMAT_FILES[fmt, mode]
        if fmt == "exported":
            program = fmts.export_program(model, mode, fe, path)
        elif fmt == "onnx":
            fmts.export_onnx(program if program is not None else model, mode, fe, path)
        else:
            source = tmp / fmts.FORMAT_FILES["onnx", mode]
            if "onnx" not in formats:
                source = tmp / f".fp32_{source.name}"
                fmts.export_onnx(program if program is not None else model, mode, fe, source)
            fmts.quantize_onnx(source, path)
            if "onnx" not in formats:
                for staged in (source, source.with_name(source.name + ".data")):
                    staged.unlink(missing_ok=True)


def _verify_format(
    path: Path, fmt: str, mode: str, fe: SeamlessM4TFeatureExtractor, cases: Sequence[Case], names: list[str],
    reference: torch.Tensor, bounds: ParityBounds, progress: bool,
) -> tuple[ParityReport, dict[str, Any]]:
    """Reload ``path`` and compare it with the eager ``reference`` [N, D]: (report, metadata entry)."""
    from . import formats as fmts

    module, digest = fmts.open_format(path, fmt, mode, FeatureConfig.from_extractor(fe), threads=torch.get_num_threads())
    _, candidate = embed_cases(cases, candidate_fn(mode, module, fe), progress, f"{mode} {fmt}")
    del module
    report = compare(reference, candidate, names=names, bounds=fmts.parity_bounds(fmt, mode, bounds),
                     label=f"{mode} {fmt} vs eager")
    entry = {"file": path.name, "parity": report.summary(), "content_sha256": digest}
    data = path.with_name(path.name + ".data")  # ONNX weights past protobuf's 2 GB limit
    if data.exists():
        entry["external_data"] = data.name
    return report, entry


def export(
    model_path: str | Path,
    output: str | Path = DEFAULT_OUTPUT,
    *,
    checkpoint: str | Path | None = None,
    config: str | Path | Mapping[str, Any] | None = None,
    modes: Sequence[str] = ("preprocessed",),
    formats: Sequence[str] = ("torchscript",),
    force: bool = False,
    cases: Sequence[Case] | None = None,
    bounds: ParityBounds = ParityBounds(),
    progress: bool = True,
) -> ExportResult:
    """Export the speaker encoder at ``model_path`` to a verified TorchScript artifact directory.

    Steps: load (+ checkpoint, + config override, normalised) -> feature extractor -> compile
    the core (script, else trace) -> wrap per mode -> save -> reload -> verify on ``cases``
    (default: :func:`w2vlab.suite.build_suite`) -> write everything atomically into ``output``.

    ``formats`` adds ``"exported"`` (``torch.export`` ``.pt2``), ``"onnx"`` and ``"onnx-int8"``
    (a dynamic-int8 copy, judged by cosine) files beside the TorchScript archive, which is always
    written (the model card, ``embed`` and the workbench use it).  Each is verified the same way,
    with :func:`w2vlab.formats.parity_bounds`.

    Raises:
        ExportParityError: a reloaded artifact missed ``bounds``; nothing is written.
        FileExistsError: ``output`` exists and ``force`` is false (checked before any work).
        ImportError: an ONNX format was asked for without the ``[onnx]`` extra (checked before any work).
    """
    from . import formats as fmts

    start = time.perf_counter()
    modes = tuple(dict.fromkeys(modes))
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"unknown export mode(s) {unknown or modes}; expected some of {MODES}")
    unknown = [f for f in formats if f not in fmts.FORMATS]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; expected some of {fmts.FORMATS}")
    extra_formats = [f for f in fmts.FORMATS if f in formats and f != "torchscript"]  # .pt2 first: ONNX reuses it
    if set(extra_formats) & set(fmts.ONNX_FORMATS):
        fmts._require("onnx", "onnxruntime", "onnxscript")
    output = Path(output)
    with atomic_directory(output, overwrite=force) as tmp:  # fails early on an existing output
        loaded = load_speaker_encoder(model_path, checkpoint, config)
        fe = feature_extractor_for(loaded)
        cases = build_suite(DEFAULT_LENGTHS) if cases is None else cases
        # Reference embeddings first: the eager model can then be dropped before any archive
        # is loaded, so at most one copy of the weights is in memory at a time.
        names, reference = embed_cases(cases, reference_fn(loaded.model, fe), progress, "eager reference")
        core, info = compile_core(loaded.model, fe.feature_size * fe.stride)
        staged = {mode: tmp / f".staged_{ARTIFACT_FILES[mode]}" for mode in modes}
        for mode in modes:
            save_module(wrap(mode, core, fe), staged[mode], {})
        del core
        for mode in modes:
            _write_formats(loaded.model, mode, fe, extra_formats, tmp)
        loaded = dataclasses.replace(loaded, model=None)  # keep the facts, release the weights
        gc.collect()

        reports, fingerprints = {}, {}
        for mode in modes:
            module, _ = load_module(staged[mode])
            _, candidate = embed_cases(cases, candidate_fn(mode, module, fe), progress, f"{mode} archive")
            reports[mode] = compare(reference, candidate, names=names, bounds=bounds, label=f"{mode} vs eager")
            fingerprints[mode] = _fingerprint(module)
            weights = state_sha256(module.core)
            del module
        format_reports: dict[str, dict[str, ParityReport]] = {fmt: {} for fmt in extra_formats}
        entries: dict[str, dict[str, dict[str, Any]]] = {mode: {} for mode in modes}
        for fmt in extra_formats:
            for mode in modes:
                format_reports[fmt][mode], entries[mode][fmt] = _verify_format(
                    tmp / fmts.FORMAT_FILES[fmt, mode], fmt, mode, fe, cases, names, reference, bounds, progress)
        failed = [r for r in (*reports.values(), *(r for m in format_reports.values() for r in m.values())) if not r.passed]
        if failed:
            raise ExportParityError(*failed)

        metadata = build_metadata(loaded, fe, info, reports, weights, entries)
        metadata_json = json.dumps(metadata, indent=2, sort_keys=True) + "\n"
        fe.save_pretrained(str(tmp / EXTRACTOR_DIR))
        fe_json = (tmp / EXTRACTOR_DIR / "preprocessor_config.json").read_text()
        for mode in modes:  # the verified archive again, now with the final metadata inside
            module, _ = load_module(staged[mode])
            path = tmp / ARTIFACT_FILES[mode]
            save_module(module, path, {"metadata.json": metadata_json, f"{EXTRACTOR_DIR}/preprocessor_config.json": fe_json})
            del module
            final, _ = load_module(path)
            if _fingerprint(final) != fingerprints[mode]:
                raise RuntimeError(f"re-saving the verified {mode} archive changed it; refusing to write")
            del final
            staged[mode].unlink()
        for fmt in extra_formats:
            for mode in modes:  # raises if storing the metadata changed the verified program
                fmts.embed_metadata(tmp / fmts.FORMAT_FILES[fmt, mode], fmt, metadata_json)
        (tmp / "metadata.json").write_text(metadata_json)
        parity = {m: r.to_dict() for m, r in reports.items()}  # TorchScript per mode, then the other formats
        parity["formats"] = {f: {m: r.to_dict() for m, r in by_mode.items()} for f, by_mode in format_reports.items()}
        (tmp / "parity.json").write_text(json.dumps(parity, indent=2) + "\n")
        from .card import render_model_card

        (tmp / "README.md").write_text(render_model_card(metadata))
    seconds = time.perf_counter() - start
    logger.info("exported %s (%s) to %s in %.1f s", "+".join(modes), "+".join(["torchscript", *extra_formats]),
                output, seconds)
    return ExportResult(output, metadata, reports, seconds, format_reports)
