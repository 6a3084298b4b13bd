"""Beyond TorchScript: ``torch.export`` programs (``.pt2``) and ONNX models, same call signature.

torch 2.13 deprecates every ``torch.jit`` entry point in favour of ``torch.export``.  This module
exports the same eager model two more ways, each with dynamic batch and length, plus a
dynamic-int8 copy of the ONNX model (:func:`quantize_onnx`, judged by cosine: :data:`INT8_BOUNDS`),
and loads each back as a callable that takes what the TorchScript artifact of that mode takes:

* preprocessed: ``f(input_features [B, T, 160] float32, attention_mask [B, T] int64 | None) -> [B, D]``
* waveform: ``f(waveform [B, N] float32, lengths [B] int64 | None) -> [B, D]``

so :func:`w2vlab.export.verify` and :func:`w2vlab.suite.run_suite` compare it with the eager
model unchanged.  The program itself always takes both inputs (mask, lengths); the loader fills
the optional one, checks inputs with the TorchScript artifact's errors, and pads waveforms
shorter than :func:`min_program_samples` (see below).

Design.  ONNX is produced from the ``torch.export`` program (``torch.onnx.export(program)``,
the dynamo exporter), so one capture serves both files.  The encoder runs "eager" attention
(:func:`w2vlab.model.build_encoder`); with SDPA the ONNX export fails.

Limits found while building this:

* Waveform programs need two feature rows, ``N >= frame_length + stride * hop_length``
  (720 samples at 16 kHz): ``torch.export`` specialises a dynamic size of 1.  The loader
  right-pads 560-719-sample inputs to 720 (``lengths`` unchanged, so the extra samples are
  ignored); the embedding then matches the one-row result within float rounding (<= 5e-7
  on the demo models).
* For the pruned student (a one-head attention layer) ``torch.export`` cannot prove that the
  row count ``1 + (N - 400) // 320`` is never 1 (guard ``1 % rows != 0``), although the
  ``N >= 720`` bound implies it; waveform programs are therefore captured with
  ``prefer_deferred_runtime_asserts_over_guards=True``, which turns that guard into a check
  run by the program.
* ONNX waveform programs are not bit-exact in the frontend: ONNX Runtime's DFT is not
  pocketfft, so ~5% of log-mels differ from HF's by an ulp, and per-bin normalisation amplifies
  that on 2-3 frame clips.  :func:`parity_bounds` gives the bounds to verify them with.
* Storing the final metadata must not touch a verified program: it is appended to the ``.pt2``
  zip and set in the ONNX ``metadata_props``, and :func:`embed_metadata` checks that nothing
  else changed.  :func:`content_sha256` (graph + weights, not metadata) is what
  ``load_artifact`` re-checks.
* onnx, onnxruntime and onnxscript are an optional extra (``pip install -e '.[onnx]'``);
  they are imported only inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from .export import ARTIFACT_FILES, MODES, TRACE_FRAMES, TRACE_VALID, PreprocessedSpeakerEncoder, WaveformSpeakerEncoder, _Core
from .features import FeatureConfig, TorchFeatureExtractor, check_lengths, check_waveform
from .parity import ParityBounds

FORMATS = ("torchscript", "exported", "onnx", "onnx-int8")
ONNX_FORMATS = ("onnx", "onnx-int8")
FORMAT_FILES = {
    **{("torchscript", mode): name for mode, name in ARTIFACT_FILES.items()},
    **{("exported", mode): f"w2vbert_speaker_exported_{mode}.pt2" for mode in MODES},
    **{("onnx", mode): f"w2vbert_speaker_{mode}.onnx" for mode in MODES},
    **{("onnx-int8", mode): f"w2vbert_speaker_{mode}_int8.onnx" for mode in MODES},
}
METADATA_KEY = "w2vlab_metadata"  # ONNX metadata_props key; "metadata.json" inside a .pt2
MAX_BATCH = 1024
MAX_FRAMES = 30_000  # stacked rows (10 min of audio); longer inputs are refused by the program
# ONNX Runtime's DFT is not pocketfft (torch's and numpy's FFT), so the ONNX waveform program's
# log-mels differ from HF's by an ulp in ~5% of values; per-bin normalisation amplifies that on
# the shortest clips.  Measured on one 560-sample clip: 1.5e-5 ("small" demo), 4.7e-5 ("full",
# cosine 1 - 3e-9); every other clip of the suite stays within 4e-6.
ONNX_WAVEFORM_MAX_ABS_DIFF = 1e-4
# Dynamic int8 (weights of every MatMul quantised per output channel, activations per call) is a
# different model, not a bit-exact copy: it is held to cosine >= 0.999 as WeSpeaker's int8
# exports are; max|diff| (measured 7e-3 tiny, 1e-2 full size) is recorded and only loosely bounded.
INT8_BOUNDS = ParityBounds(min_cosine=0.999, max_abs_diff=0.1)
ONNX_HINT = "pip install -e '.[onnx]'  (installs onnx, onnxruntime, onnxscript)"


def min_program_samples(config: FeatureConfig) -> int:
    """Shortest waveform a waveform program runs as is: two feature rows (720 samples at 16 kHz)."""
    return config.frame_length + config.stride * config.hop_length


def parity_bounds(fmt: str, mode: str, bounds: ParityBounds = ParityBounds()) -> ParityBounds:
    """The bounds to verify a ``fmt``/``mode`` file with: ``bounds``, with max|diff| loosened to
    :data:`ONNX_WAVEFORM_MAX_ABS_DIFF` for ONNX waveform programs (cosine unchanged), and
    :data:`INT8_BOUNDS` for the int8 copy, which is judged by cosine."""
    if fmt == "onnx-int8":
        return ParityBounds(min(bounds.min_cosine, INT8_BOUNDS.min_cosine), max(bounds.max_abs_diff, INT8_BOUNDS.max_abs_diff))
    if (fmt, mode) == ("onnx", "waveform") and bounds.max_abs_diff < ONNX_WAVEFORM_MAX_ABS_DIFF:
        return ParityBounds(bounds.min_cosine, ONNX_WAVEFORM_MAX_ABS_DIFF)
    return bounds


def onnx_available() -> bool:
    """Whether the optional ONNX extra (onnx, onnxruntime, onnxscript) is installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime", "onnxscript"))


def _require(*names: str) -> None:
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"ONNX support needs {', '.join(missing)}, which is not installed; run: {ONNX_HINT}")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


# --------------------------------------------------------------------------- capture


def _capture_inputs(model: nn.Module, mode: str, config: FeatureConfig) -> tuple[nn.Module, tuple, tuple, bool]:
    """(module, example inputs, dynamic shapes, defer guards) for ``torch.export`` of ``mode``."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    g = torch.Generator().manual_seed(0)
    if mode == "preprocessed":  # the TorchScript trace example: two clips, the second padded
        features = torch.randn(2, TRACE_FRAMES, config.feature_dim, generator=g)  # (2, T, 160)
        mask = torch.ones(2, TRACE_FRAMES, dtype=torch.long)  # (2, T)
        mask[1, TRACE_VALID:] = 0
        frames = torch.export.Dim("frames", min=1, max=MAX_FRAMES)
        return _Core(model).eval(), (features, mask), ({0: batch, 1: frames}, {0: batch, 1: frames}), False
    frontend = TorchFeatureExtractor(config).eval()
    samples = 40_000  # (2.5 s) and a second clip 12345 samples shorter
    waveform = 0.1 * torch.randn(2, samples, generator=g)  # (2, N)
    lengths = torch.tensor([samples, samples - 12_345])  # (2,)
    span = torch.export.Dim("samples", min=min_program_samples(config),
                            max=config.frame_length + (2 * MAX_FRAMES - 1) * config.hop_length)
    module = WaveformSpeakerEncoder(frontend, _Core(model)).eval()
    return module, (waveform, lengths), ({0: batch, 1: span}, {0: batch}), True


def capture(model: nn.Module, mode: str, fe) -> torch.export.ExportedProgram:
    """``torch.export`` the eager ``model`` for ``mode`` (dynamic batch and length); nothing is saved.

    Args:
        model: the eager :class:`w2vlab.model.SpeakerEncoder`
        fe: the ``SeamlessM4TFeatureExtractor`` the model was trained with
    """
    _check_mode(mode)
    module, example, dynamic, defer = _capture_inputs(model, mode, FeatureConfig.from_extractor(fe))
    with torch.no_grad():
        return torch.export.export(module, example, dynamic_shapes=dynamic,
                                   prefer_deferred_runtime_asserts_over_guards=defer)


def export_program(
    model: nn.Module, mode: str, fe, path: str | Path, metadata_json: Optional[str] = None
) -> torch.export.ExportedProgram:
    """Capture ``model`` for ``mode`` and save it to ``path`` (``.pt2``); returns the program.

    ``metadata_json`` is stored in the archive as ``metadata.json`` (read it back with
    :func:`read_metadata`).  Pass the returned program to :func:`export_onnx` to skip a second
    capture.
    """
    program = capture(model, mode, fe)
    extra = {"metadata.json": metadata_json} if metadata_json is not None else None
    torch.export.save(program, str(path), extra_files=extra)
    return program


@contextlib.contextmanager
def _quiet_onnx_exporter():
    """Hide the exporter's notices that say nothing about this model (no torchvision ops, pytree)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx._internal.exporter._registration", "onnx_ir", "onnxscript")]
    levels = [log.level for log in loggers]
    for log in loggers:  # onnx_ir logs every deduplicated initializer at INFO
        log.setLevel(logging.ERROR if log.name.startswith("torch") else logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message=r".*axis name.*will not be used", category=UserWarning)
            yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def export_onnx(
    model: nn.Module | torch.export.ExportedProgram,
    mode: str,
    fe,
    path: str | Path,
    metadata_json: Optional[str] = None,
    external_data: Optional[bool] = None,
) -> None:
    """Export ``model`` for ``mode`` to an ONNX file at ``path`` (opset of torch's dynamo exporter).

    ``model`` is the eager encoder, or the program :func:`export_program` returned (no second
    capture).  Inputs are named as in the artifact (``input_features, attention_mask`` or
    ``waveform, lengths``), the output ``embedding``, the dynamic axes ``batch`` and ``frames``
    / ``samples``.  ``metadata_json`` goes into the model's ``metadata_props`` under
    ``"w2vlab_metadata"``.  Weights stay inside the file unless ``external_data`` is true or
    (``None``) they pass protobuf's 2 GB limit; then they go to ``<path>.data`` beside it, which
    must travel with the file.

    Raises:
        ImportError: the ``[onnx]`` extra is not installed.
    """
    _require("onnx", "onnxruntime", "onnxscript")
    _check_mode(mode)
    program = model if isinstance(model, torch.export.ExportedProgram) else capture(model, mode, fe)
    with _quiet_onnx_exporter():
        onnx_program = torch.onnx.export(program, dynamo=True, verbose=False, optimize=True)
    _name_graph(onnx_program.model, mode)
    if metadata_json is not None:
        onnx_program.model.metadata_props[METADATA_KEY] = metadata_json
    onnx_program.save(str(path), external_data=external_data)


def quantize_onnx(source: str | Path, path: str | Path) -> None:
    """Write a dynamic-int8 copy of the fp32 ONNX file ``source`` to ``path`` (ONNX Runtime's
    ``quantize_dynamic``: MatMul weights int8 per output channel, activations quantised per call).

    About 3.5x smaller and, on 2 CPU threads at full size, measured ~3x faster than eager, at
    cosine ~0.9999 to it: verify it with :data:`INT8_BOUNDS`, never as an exact copy.  The
    frontend's float64 mel projection is not quantised (only float32 MatMuls are).
    """
    _require("onnx", "onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quant_logger = logging.getLogger()  # quantize_dynamic warns on the root logger about shape inference
    level = quant_logger.level
    quant_logger.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
    finally:
        quant_logger.setLevel(level)


def _name_graph(model: Any, mode: str) -> None:
    """Give the ONNX graph (an ``onnx_ir.Model``) the artifact's output and axis names."""
    import onnx_ir as ir

    graph = model.graph
    first = graph.inputs[0].shape  # (batch, frames, F) or (batch, samples), dims named s0, s1, ...
    rename = {first[0].value: "batch", first[1].value: "frames" if mode == "preprocessed" else "samples"}
    for value in [*graph.inputs, *(v for node in graph for v in node.outputs)]:
        if value.name == "embedding":  # taken by the relative-position Gather; free it for the output
            value.name = "relative_position_embedding"
        if value.shape is not None:
            value.shape = ir.Shape([ir.SymbolicDim(rename.get(d.value, d.value)) if isinstance(d, ir.SymbolicDim) else d
                                    for d in value.shape])
    graph.outputs[0].name = "embedding"


# --------------------------------------------------------------------------- load


class _WaveformEntry(nn.Module):
    """Waveform-mode entry point around a program: the TorchScript artifact's checks, then
    ``lengths`` filled and short clips padded to the program's minimum width."""

    def __init__(self, core: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], config: FeatureConfig):
        super().__init__()
        self.core = core
        self.min_num_samples = config.min_num_samples  # 560: two analysis frames
        self.min_program_samples = min_program_samples(config)  # 720: two feature rows

    def forward(self, waveform: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        check_waveform(waveform, self.min_num_samples)
        batch, num_samples = waveform.shape
        if lengths is None:
            lengths = torch.full((batch,), num_samples, dtype=torch.long)
        else:
            lengths = check_lengths(lengths, batch, num_samples, self.min_num_samples)
        waveform = waveform.to(torch.float32)
        if num_samples < self.min_program_samples:  # samples past ``lengths`` are ignored
            waveform = nn.functional.pad(waveform, [0, self.min_program_samples - num_samples])  # (B, 720)
        return self.core(waveform, lengths)


class ProgramCore(nn.Module):
    """A loaded ``.pt2`` program (``torch.export.load(path).module()``) as a submodule.

    The program was captured in eval mode and refuses ``train()``; this wrapper makes
    ``train()``/``eval()`` on an enclosing module a no-op for it instead of an error.
    """

    def __init__(self, program: nn.Module):
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> "ProgramCore":
        return self

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.program(*inputs)


class OnnxRuntimeCore(nn.Module):
    """An ``onnxruntime.InferenceSession`` called like a torch module: tensors in, a tensor out."""

    def __init__(self, session: Any):
        super().__init__()
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_name = session.get_outputs()[0].name

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        feeds = {name: x.detach().cpu().contiguous().numpy() for name, x in zip(self.input_names, inputs)}
        return torch.from_numpy(self.session.run([self.output_name], feeds)[0])


def onnx_session(path: str | Path, threads: Optional[int] = None) -> Any:
    """An ONNX Runtime CPU session for ``path``: all graph optimisations, ``threads`` intra-op threads
    (``None``: ONNX Runtime's default, one per physical core), and idle workers that sleep.

    ONNX Runtime's workers spin between calls by default, competing with torch's OpenMP threads
    for the same cores on a small machine.  Turned off here: in sequential runs on 2 shared
    cores the full-size model measured 0.44x eager with it off and 0.56x with it on, while
    runs that alternate with eager (``w2vlab.bench``) put fp32 ONNX Runtime at 1.05-1.13x
    either way, so treat it as a courtesy to the process, not a speed-up.
    """
    _require("onnxruntime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_format(
    path: str | Path, fmt: str, mode: str, config: Optional[FeatureConfig] = None, threads: Optional[int] = None
) -> Callable[..., torch.Tensor]:
    """Load an exported file as a callable with the TorchScript artifact's signature for ``mode``.

    Args:
        fmt: one of :data:`FORMATS`
        config: the feature extractor's :class:`FeatureConfig` (default: w2v-bert-2.0's); gives
            the feature width and the waveform minimums
        threads: ONNX Runtime intra-op threads (``onnx`` only)
    """
    return open_format(path, fmt, mode, config, threads, fingerprint=False)[0]


def open_format(
    path: str | Path,
    fmt: str,
    mode: str,
    config: Optional[FeatureConfig] = None,
    threads: Optional[int] = None,
    fingerprint: bool = True,
) -> tuple[Callable[..., torch.Tensor], str]:
    """:func:`load_format`, plus the file's :func:`content_sha256` (``""`` if ``fingerprint`` is false)
    computed from the same load where the format allows it (TorchScript, ``.pt2``)."""
    _check_mode(mode)
    config = config if config is not None else FeatureConfig()
    if fmt == "torchscript":
        from .export import load_module, state_sha256

        module = load_module(Path(path))[0]
        return module, state_sha256(module.core) if fingerprint else ""
    if fmt == "exported":
        program = torch.export.load(str(path))
        digest = _program_sha256(program) if fingerprint else ""
        core = ProgramCore(program.module())
    elif fmt in ONNX_FORMATS:
        digest = _onnx_sha256(path) if fingerprint else ""
        core = OnnxRuntimeCore(onnx_session(path, threads))
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    if mode == "preprocessed":
        return PreprocessedSpeakerEncoder(core, config.feature_dim).eval(), digest
    return _WaveformEntry(core, config).eval(), digest


# --------------------------------------------------------------------------- integrity


def _update_tensor(digest: Any, name: str, tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous()
    digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def _program_sha256(program: torch.export.ExportedProgram) -> str:
    """Graph code + every weight, buffer and constant of a ``.pt2`` program; not its extra files."""
    digest = hashlib.sha256(program.graph_module.code.encode())
    tensors = {**program.state_dict, **{k: v for k, v in program.constants.items() if isinstance(v, torch.Tensor)}}
    for name in sorted(tensors):
        _update_tensor(digest, name, tensors[name])
    return digest.hexdigest()


def _onnx_sha256(path: str | Path) -> str:
    """Nodes, inputs, outputs and initializers of an ONNX graph (external data read); not its
    ``metadata_props``.  Hashed piece by piece: protobuf cannot serialise a graph over 2 GB."""
    _require("onnx")
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    digest = hashlib.sha256()
    for proto in (*graph.input, *graph.output, *graph.node):
        digest.update(proto.SerializeToString(deterministic=True))
    for init in sorted(graph.initializer, key=lambda i: i.name):
        _update_tensor(digest, init.name, torch.from_numpy(numpy_helper.to_array(init).copy()))
    return digest.hexdigest()


def content_sha256(path: str | Path, fmt: str) -> str:
    """What identifies an ``exported`` or ``onnx`` file's program: graph and weights, not metadata.

    Recorded in ``metadata.json`` at export, re-checked when an artifact is opened."""
    if fmt == "exported":
        return _program_sha256(torch.export.load(str(path)))
    if fmt in ONNX_FORMATS:
        return _onnx_sha256(path)
    raise ValueError(f"content_sha256 reads 'exported' or 'onnx' files; received format {fmt!r}")


def embed_metadata(path: str | Path, fmt: str, metadata_json: str) -> None:
    """Store ``metadata_json`` inside an already written and verified ``exported`` or ``onnx`` file,
    leaving its program untouched (checked: raises ``RuntimeError`` otherwise).

    A ``.pt2`` is a zip: ``extra/metadata.json`` is appended and every existing member keeps its
    bytes and offset.  An ONNX model gets the ``metadata_props`` entry; its external weights
    (``<file>.data``) are not rewritten, and :func:`content_sha256` must not change.
    """
    path = Path(path)
    if fmt == "exported":
        with zipfile.ZipFile(path) as archive:
            before = {i.filename: (i.CRC, i.header_offset, i.compress_size) for i in archive.infolist()}
        prefix = next(iter(before)).split("/")[0]
        if f"{prefix}/extra/metadata.json" in before:
            raise ValueError(f"{path.name} already embeds metadata.json; export again instead of editing it")
        with zipfile.ZipFile(path, "a") as archive:  # appends the member and a new central directory
            archive.writestr(f"{prefix}/extra/metadata.json", metadata_json)
        with zipfile.ZipFile(path) as archive:
            after = {i.filename: (i.CRC, i.header_offset, i.compress_size) for i in archive.infolist()}
        changed = {name for name, info in before.items() if after.get(name) != info}
    elif fmt in ONNX_FORMATS:
        _require("onnx")
        import onnx

        digest = _onnx_sha256(path)
        model = onnx.load(str(path), load_external_data=False)  # graph + references to <file>.data
        props = {p.key: p.value for p in model.metadata_props}
        props[METADATA_KEY] = metadata_json
        onnx.helper.set_model_props(model, props)
        onnx.save(model, str(path))
        changed = {"graph or weights"} if _onnx_sha256(path) != digest else set()
    else:
        raise ValueError(f"embed_metadata writes 'exported' or 'onnx' files; received format {fmt!r}")
    if changed:
        raise RuntimeError(f"storing metadata in {path.name} changed {sorted(changed)[:3]}; refusing to keep it")



def read_metadata(path: str | Path, fmt: str) -> Optional[dict[str, Any]]:
    """The metadata stored inside a file of format ``fmt``, or ``None`` when it has none."""
    if fmt in ("torchscript", "exported"):  # both are zips with extra files in <archive>/extra/: no unpickling
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/extra/metadata.json")]
            text = archive.read(names[0]).decode() if names else ""
    elif fmt in ONNX_FORMATS:
        _require("onnx")
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        text = props.get(METADATA_KEY, "")
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    return json.loads(text) if text else None
