"""Beyond TorchScript, exporter side: ``torch.export`` programs (``.pt2``), ONNX models, an int8 copy
and AOTInductor packages (the program compiled ahead of time, loadable from C++).

torch 2.13 deprecates every ``torch.jit`` entry point in favour of ``torch.export``.  This module
exports the same eager model two more ways, each with dynamic batch and length, plus a
dynamic-int8 copy of the ONNX model (:func:`w2vlab.export._int8.quantize_onnx`, judged by cosine:
:data:`w2vlab._parity.INT8_BOUNDS`).  :mod:`w2vlab.runtime._loaders` loads each back as a callable that
takes what the TorchScript artifact of that mode takes:

* preprocessed: ``f(input_features [B, T, 160] float32, attention_mask [B, T] | None) -> [B, D]``, and
  ``clip_rows [B] | None`` third when the model pools toolkit-style (:mod:`w2vlab.runtime._entry`)
* waveform: ``f(waveform [B, N] float32, lengths [B] int64 | None) -> [B, D]``

so :func:`w2vlab.export._suite.verify` compares it with the eager model unchanged.  The program itself
always takes every input (mask as int32, the extractor's dtype, and clip_rows; lengths); the loader
(:mod:`w2vlab.runtime._loaders`) fills the optional ones, checks inputs with the TorchScript artifact's
errors, and pads waveforms shorter than
:func:`w2vlab.runtime._entry.min_program_samples` (see below).

Design.  ONNX is produced from a ``torch.export`` program (``torch.onnx.export(program)``, the
dynamo exporter); :func:`w2vlab.export._pipeline.capture` captures it from the model with
:func:`w2vlab.export._rewrites.faster_blocks`, a second capture beside the ``.pt2``'s, which stays
bit-identical to the stock model.  The encoder runs "eager" attention
(:func:`w2vlab.model._encoder.build_encoder`); with SDPA the ONNX export fails.

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
  that on 2-3 frame clips.  :func:`w2vlab._parity.format_bounds` gives the bounds to verify them with.
* Storing the final metadata must not touch a verified program: it is appended to the ``.pt2``
  zip and set in the ONNX ``metadata_props``, and :func:`embed_metadata` checks that nothing
  else changed.  The content hash (graph + weights, not metadata; :mod:`w2vlab._contract`) is what
  ``load_artifact`` re-checks.
* onnx, onnxruntime and onnxscript are an optional extra (``pip install -e '.[onnx]'``);
  they are imported only inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from w2vlab._contract import (
    FORMATS,
    METADATA_FILE,
    ONNX_FORMATS,
    ONNX_HINT,
    ONNX_METADATA_KEY,
    ONNX_PACKAGES,
    OPENVINO_HINT,
    OPENVINO_METADATA_KEY,
    ZIP_FORMATS,
    check_mode,
    onnx_sha256,
    openvino_rt_info,
    openvino_sha256,
    require,
    require_compiler,
)
from w2vlab._features import FeatureConfig
from w2vlab.export._torchscript import trace_example
from w2vlab.runtime._entry import core_for, min_program_samples, waveform_encoder

MAX_BATCH = 1024
MAX_FRAMES = 30_000  # stacked rows (10 min of audio); longer inputs are refused by the program
STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"  # node metadata the ONNX exporter writes; dropped


# --------------------------------------------------------------------------- capture


def _capture_inputs(model: nn.Module, mode: str, config: FeatureConfig) -> tuple[nn.Module, tuple, tuple, bool]:
    """(module, example inputs, dynamic shapes, defer guards) for ``torch.export`` of ``mode``."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    pooling = model.pooling_choice
    if mode == "preprocessed":  # the TorchScript trace example: two clips, the second padded
        frames = torch.export.Dim("frames", min=1, max=MAX_FRAMES)
        example = trace_example(config.feature_dim, pooling)
        dynamic = ({0: batch, 1: frames}, {0: batch, 1: frames}, {0: batch})[: len(example)]
        return core_for(model).eval(), example, dynamic, False
    samples = 40_000  # (2.5 s) and a second clip 12345 samples shorter
    waveform = 0.1 * torch.randn(2, samples, generator=torch.Generator().manual_seed(0))  # (2, N)
    lengths = torch.tensor([samples, samples - 12_345])  # (2,)
    span = torch.export.Dim(
        "samples", min=min_program_samples(config), max=config.frame_length + (2 * MAX_FRAMES - 1) * config.hop_length
    )
    module = waveform_encoder(core_for(model), config, pooling).eval()
    return module, (waveform, lengths), ({0: batch, 1: span}, {0: batch}), True


def capture(model: nn.Module, mode: str, config: FeatureConfig) -> torch.export.ExportedProgram:
    """``torch.export`` the eager ``model`` for ``mode`` (dynamic batch and length); nothing is saved.

    Args:
        model: the eager :class:`w2vlab.model._encoder.SpeakerEncoder`
        config: the :class:`FeatureConfig` of the extractor the model was trained with
    """
    module, example, dynamic, defer = _capture_inputs(model, check_mode(mode), config)
    with torch.no_grad():
        return torch.export.export(
            module, example, dynamic_shapes=dynamic, prefer_deferred_runtime_asserts_over_guards=defer
        )


def export_program(
    model: nn.Module, mode: str, config: FeatureConfig, path: str | Path, metadata_json: str | None = None
) -> torch.export.ExportedProgram:
    """Capture ``model`` for ``mode`` and save it to ``path`` (``.pt2``); returns the program.

    ``metadata_json`` is stored in the archive as ``metadata.json`` (read it back with
    :func:`w2vlab._contract.read_embedded_metadata`).  Pass the returned program to
    :func:`export_onnx` to skip a second capture.  Each node's ``stack_trace`` (this machine's
    file paths) is dropped first, as in the ONNX files; ``nn_module_stack`` still names its layer.
    """
    program = capture(model, mode, config)
    for module in program.graph_module.modules():
        if isinstance(module, torch.fx.GraphModule):
            for node in module.graph.nodes:
                node.meta.pop("stack_trace", None)
    extra = {METADATA_FILE: metadata_json} if metadata_json is not None else None
    torch.export.save(program, str(path), extra_files=extra)
    return program


@contextlib.contextmanager
def _quiet_onnx_exporter():
    """Hide the exporter's notices that say nothing about this model (no torchvision ops, pytree)."""
    loggers = [
        logging.getLogger(name) for name in ("torch.onnx._internal.exporter._registration", "onnx_ir", "onnxscript")
    ]
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
    config: FeatureConfig,
    path: str | Path,
    metadata_json: str | None = None,
    external_data: bool | None = None,
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
        MissingDependencyError: the ``[onnx]`` extra is not installed (an ``ImportError``).
    """
    require(*ONNX_PACKAGES, needed_by="ONNX export", hint=ONNX_HINT)
    check_mode(mode)
    program = model if isinstance(model, torch.export.ExportedProgram) else capture(model, mode, config)
    with _quiet_onnx_exporter():
        onnx_program = torch.onnx.export(program, dynamo=True, verbose=False, optimize=True)
    _name_graph(onnx_program.model, mode)
    _drop_stack_traces(onnx_program.model)
    if metadata_json is not None:
        onnx_program.model.metadata_props[ONNX_METADATA_KEY] = metadata_json
    onnx_program.save(str(path), external_data=external_data)
    del onnx_program
    _forget_last_graph()


def _drop_stack_traces(model: Any) -> None:
    """Remove each node's ``pkg.torch.onnx.stack_trace`` from an ``onnx_ir.Model``.

    The exporter records the Python stack that made each node, with this machine's file paths
    (site-packages, the exporting script): a fifth of the graph's bytes on the tiny demo, and,
    since :func:`w2vlab._contract.onnx_sha256` hashes nodes whole, a content hash that depended on
    where w2vlab was installed.  The module names (``namespace``, ``pkg.torch.onnx.class_hierarchy``,
    which :mod:`w2vlab.export._int8` reads) stay, and still say which layer made each node.  Dropping the
    program's own traces first (as :func:`export_program` does) is not enough: the exporter's
    decompositions trace again and record new ones (178 of 187 nodes on the tiny demo).
    """
    for graph in (model.graph, *model.functions.values()):
        for node in graph.all_nodes():
            node.metadata_props.pop(STACK_TRACE_KEY, None)


def _forget_last_graph() -> None:
    """onnxscript's default rewrite rules (``onnxscript.rewriter._DEFAULT_REWRITE_RULES``, module-level)
    keep, in their matchers, the last graph they matched, and with it every weight the exporter
    wrapped: after an ONNX export of the full-size model, releasing the model and trimming the heap
    left gigabytes resident (docs/benchmark.md, "Why the code is as it is").  Drop those references."""
    import onnxscript.rewriter as rewriter

    for rule in getattr(rewriter, "_DEFAULT_REWRITE_RULES", ()):
        matcher = getattr(rule, "_matcher", None)
        for name in ("_graph", "_current_node", "_match", "_tracer"):
            if getattr(matcher, name, None) is not None:
                setattr(matcher, name, None)


def export_aoti(program: torch.export.ExportedProgram, mode: str, path: str | Path) -> None:
    """Compile ``mode``'s ``program`` ahead of time with AOTInductor into a package at ``path`` (``.pt2``).

    The package holds generated C++ and the shared library compiled from it, weights included:
    C++ loads it with ``torch::inductor::AOTIModelPackageLoader`` (``cpp/w2vlab_embed.cpp``), and
    :mod:`w2vlab.runtime._loaders` with the same libtorch class, neither needing the eager model.
    It keeps the program's dynamic batch and length.  Inductor fuses and reorders float operations,
    so it is verified within the fp32 bounds, not bit for bit.  Compiling takes tens of seconds even
    for the tiny demo (docs/formats.md).  The package's own metadata map says its mode
    (``w2vlab_mode``), so a C++ loader can refuse a package of the other mode before running it.

    Raises:
        RuntimeError: no C++ compiler is installed.
    """
    require_compiler()
    from torch._inductor import aoti_compile_and_package

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        # The waveform frontend's rfft stays an ATen call ("no code generation for complex operators")
        warnings.filterwarnings("ignore", message=r".*complex operators", category=UserWarning)
        aoti_compile_and_package(
            program,
            package_path=str(path),
            inductor_configs={"aot_inductor.metadata": {"w2vlab_mode": check_mode(mode)}},
        )


def export_openvino(onnx_path: str | Path, path: str | Path) -> None:
    """Convert the fp32 ONNX file at ``onnx_path`` (the rewritten program the "onnx" format writes) to an
    OpenVINO IR: the graph at ``path`` (``.xml``), its weights in the ``.bin`` of the same stem.

    Weights stay fp32: ``openvino.save_model`` compresses them to fp16 unless told not to.  The precision
    the IR runs at is chosen when it is compiled (:mod:`w2vlab.runtime._loaders` asks for f32 explicitly:
    OpenVINO's CPU plugin runs an fp32 graph in bf16 by default on a CPU with AVX512_BF16 or AMX).

    Raises:
        MissingDependencyError: openvino is not installed (``pip install "w2vlab[openvino]"``).
    """
    require("openvino", needed_by="OpenVINO export", hint=OPENVINO_HINT)
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(path), compress_to_fp16=False)
    del model


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
            value.shape = ir.Shape(
                [
                    ir.SymbolicDim(rename.get(d.value, d.value)) if isinstance(d, ir.SymbolicDim) else d
                    for d in value.shape
                ]
            )
    graph.outputs[0].name = "embedding"


# --------------------------------------------------------------------------- metadata


def embed_metadata(path: str | Path, fmt: str, metadata_json: str, verified_sha256: str | None = None) -> None:
    """Store ``metadata_json`` inside an already written and verified file of any format, leaving
    its program untouched (checked: raises ``RuntimeError`` otherwise).  ``verified_sha256``: the
    content hash the file was verified with, compared with the edited ONNX file's instead of
    hashing it once more before the edit (a full read of the weights).

    TorchScript archives, ``.pt2`` programs and AOTInductor packages are zips: ``extra/metadata.json``
    is appended (``torch.jit.load(_extra_files=...)`` and ``torch.export.load`` read it) and every
    existing member keeps its bytes and offset, so the verified file is not re-serialised.  An ONNX
    model gets the ``metadata_props`` entry; its external weights (``<file>.data``) are not
    rewritten, and :func:`w2vlab._contract.onnx_sha256` must not change.  An OpenVINO IR gets an element in
    its ``.xml``'s ``<rt_info>``; its ``.bin`` is not touched, and :func:`w2vlab._contract.openvino_sha256`
    must not change.
    """
    path = Path(path)
    if fmt in ZIP_FORMATS:
        with zipfile.ZipFile(path) as archive:
            before = {i.filename: (i.CRC, i.header_offset, i.compress_size) for i in archive.infolist()}
        prefix = next(iter(before)).split("/")[0]
        if f"{prefix}/extra/{METADATA_FILE}" in before:
            raise ValueError(f"{path.name} already embeds {METADATA_FILE}; export again instead of editing it")
        with zipfile.ZipFile(path, "a") as archive:  # appends the member and a new central directory
            archive.writestr(f"{prefix}/extra/{METADATA_FILE}", metadata_json)
        with zipfile.ZipFile(path) as archive:
            after = {i.filename: (i.CRC, i.header_offset, i.compress_size) for i in archive.infolist()}
        changed = {name for name, info in before.items() if after.get(name) != info}
    elif fmt in ONNX_FORMATS:
        require("onnx", needed_by="storing metadata in an ONNX file", hint=ONNX_HINT)
        import onnx

        digest = verified_sha256 if verified_sha256 is not None else onnx_sha256(path)
        model = onnx.load(str(path), load_external_data=False)  # graph + references to <file>.data
        props = {p.key: p.value for p in model.metadata_props}
        props[ONNX_METADATA_KEY] = metadata_json
        onnx.helper.set_model_props(model, props)
        onnx.save(model, str(path))
        changed = {"graph or weights"} if onnx_sha256(path) != digest else set()
    elif fmt == "openvino":
        digest = verified_sha256 if verified_sha256 is not None else openvino_sha256(path)
        _embed_openvino(path, metadata_json)
        changed = {"graph or weights"} if openvino_sha256(path) != digest else set()
    else:
        raise ValueError(f"embed_metadata writes files of formats {FORMATS}; received format {fmt!r}")
    if changed:
        raise RuntimeError(f"storing metadata in {path.name} changed {sorted(changed)[:3]}; refusing to keep it")


def _embed_openvino(path: Path, metadata_json: str) -> None:
    """Add ``<w2vlab_metadata value="..."/>`` to the ``<rt_info>`` of the IR at ``path`` (an XML edit: the
    weights file is not read or written).  OpenVINO reads it back as ``model.get_rt_info("w2vlab_metadata")``."""
    import xml.etree.ElementTree as ET

    tree = ET.parse(path)
    net = tree.getroot()
    rt_info = openvino_rt_info(net)
    if rt_info.find(OPENVINO_METADATA_KEY) is not None:
        raise ValueError(f"{path.name} already embeds {OPENVINO_METADATA_KEY}; export again instead of editing it")
    if rt_info not in net:
        net.append(rt_info)
    ET.SubElement(rt_info, OPENVINO_METADATA_KEY, value=metadata_json)
    path.write_text('<?xml version="1.0"?>\n' + ET.tostring(net, encoding="unicode") + "\n")  # in the staging dir
