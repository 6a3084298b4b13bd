"""Open an artifact file of any format as a callable with the artifact's signature for its mode.

TorchScript archives are loaded with ``torch.jit.load``, ``.pt2`` programs with
``torch.export.load``, AOTInductor packages with libtorch's package loader, ONNX
files with an ONNX Runtime session and OpenVINO IR with OpenVINO's CPU plugin at f32; all but the first
are put behind
the entry points of :mod:`w2vlab.runtime._entry`, so every format takes the same inputs, raises the same
errors and is compared with the eager model unchanged.  :func:`open_format` also returns the
file's content hash (:mod:`w2vlab._contract`), which the exporter records and the consumer
re-checks.  :data:`READERS` holds, per format, its opener and what its file is called when it
fails to open, so a corrupt file's :class:`~w2vlab._contract.ArtifactError` names its own format.
This module is consumer-side: it imports no exporter and no modelling code.
"""

from __future__ import annotations

import contextlib
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from w2vlab._contract import (
    LABELLED_FORMATS,
    ONNX_HINT,
    OPENVINO_HINT,
    ArtifactError,
    InputError,
    W2vlabError,
    check_format,
    check_mode,
    onnx_sha256,
    openvino_sha256,
    openvino_weights,
    package_sha256,
    program_sha256,
    require,
    script_sha256,
)
from w2vlab._features import FeatureConfig
from w2vlab.runtime._entry import ClipByClip, ProgramWaveformEntry, preprocessed_entry

# The torch frontend runs on one intra-op thread.  It is ~40 small ATen calls, each an OpenMP
# parallel region when it has 2 threads, and a region waits for its slowest thread: on a busy
# machine, for a descheduled one.  One thread bounds the tail at a cost of 0.1% of the full-size
# encoder's time (docs/benchmark.md, "The frontend on a busy machine": `--only frontend_busy`).
FRONTEND_THREADS = 1


@contextlib.contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Run the block's torch ops on ``n`` intra-op threads, then restore the previous count (0.2 us a pair)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence torch >= 2.9's "torch.jit.* is deprecated" DeprecationWarnings, and only those."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        yield


def load_script(
    path: str | Path, extra_names: tuple[str, ...] = (), device: str | torch.device = "cpu"
) -> tuple[torch.jit.ScriptModule, dict[str, str]]:
    """``torch.jit.load`` onto ``device`` in eval mode: (module, the requested extra files as text)."""
    extra = {name: "" for name in extra_names}
    with quiet_jit():
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    return module.eval(), {k: v.decode() if isinstance(v, bytes) else v for k, v in extra.items()}


class ProgramCore(nn.Module):
    """A loaded ``.pt2`` program (``torch.export.load(path).module()``) as a submodule.

    The program was captured in eval mode and refuses ``train()``; this wrapper makes
    ``train()``/``eval()`` on an enclosing module a no-op for it instead of an error.
    """

    def __init__(self, program: nn.Module):
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> ProgramCore:
        return self

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.program(*inputs)


class AotiCore(nn.Module):
    """An AOTInductor package run by libtorch's own loader (``torch._C._aoti.AOTIModelPackageLoader``,
    the class C++ uses), not ``torch._inductor.aoti_load_package``: that one imports the whole
    compiler, which more than doubles the time to a first embedding (docs/benchmark.md, "Why the
    code is as it is").

    Inputs are made contiguous first.  The compiled code indexes its inputs with the strides of
    the capture example: given HF's attention mask as is (strides ``(1, B)``, a
    transposed layout) it read the wrong elements and returned embeddings at cosine 0.70 to
    eager, without an error.
    """

    def __init__(self, path: str | Path):
        super().__init__()
        self.loader = torch._C._aoti.AOTIModelPackageLoader(str(path), "model", False, 1, -1)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.loader.run([x.contiguous() for x in inputs])[0]


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


class OpenVinoCore(nn.Module):
    """An OpenVINO compiled model called like a torch module: ``[B, T, 160]`` features and ``[B, T]`` int32 mask
    (or ``[B, N]`` waveforms and ``[B]`` lengths) in, ``[B, D]`` float32 out (one infer request, reused)."""

    def __init__(self, compiled: Any):
        super().__init__()
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in compiled.inputs]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        import numpy as np

        feeds = {name: x.detach().cpu().contiguous().numpy() for name, x in zip(self.input_names, inputs)}
        result = self.request.infer(feeds)
        return torch.from_numpy(np.array(result[self.compiled.outputs[0]], dtype=np.float32, copy=True))


def openvino_config(threads: int | None) -> dict[str, str]:
    """The CPU plugin's settings for an artifact's IR: f32 inference precision, set explicitly (the plugin
    runs an fp32 graph in bf16 by default on a CPU with AVX512_BF16 or AMX), latency mode, and ``threads``
    inference threads (``None``: OpenVINO's default)."""
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    return config | ({"INFERENCE_NUM_THREADS": str(threads)} if threads is not None else {})


def onnx_session(
    path: str | Path, threads: int | None = None, spinning: bool = False, profile_prefix: str | None = None
) -> Any:
    """An ONNX Runtime CPU session for ``path``: all graph optimisations, ``threads`` intra-op threads
    (``None``: ONNX Runtime's default, one per physical core), and idle workers that sleep
    (``spinning=True``: that busy-wait, ONNX Runtime's default; the benchmark measures both).
    ``profile_prefix``: write ONNX Runtime's per-node profile there (``session.end_profiling()``).

    ONNX Runtime's workers spin between calls by default, competing with torch's OpenMP threads
    for the same cores on a small machine.  Turned off here as a courtesy to the process, not as a
    speed-up: the benchmark measures both, within this machine's noise (docs/benchmark.md).
    """
    require("onnxruntime", needed_by="running an ONNX file", hint=ONNX_HINT)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if threads is not None:
        options.intra_op_num_threads = threads
    if profile_prefix is not None:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------- one reader per format


def _zip_errors() -> tuple[type[BaseException], ...]:
    return (zipfile.BadZipFile, RuntimeError, OSError, ValueError, EOFError)


def _onnx_errors() -> tuple[type[BaseException], ...]:
    """What onnx and ONNX Runtime raise on a file that is not a model (none of it derives from ValueError)."""
    errors: tuple[type[BaseException], ...] = (RuntimeError, OSError, ValueError)
    with contextlib.suppress(ImportError):  # without the [onnx] extra, require() has said so already
        from google.protobuf.message import DecodeError

        errors += (DecodeError,)
    with contextlib.suppress(ImportError):
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

        errors += (ort_state.Fail, ort_state.InvalidProtobuf, ort_state.InvalidGraph, ort_state.NoSuchFile)
    return errors


def _check_zip(path: Path) -> None:
    """Open the zip's central directory (cheap): a torn or foreign file fails here, before torch logs a
    deserialisation traceback of its own."""
    with zipfile.ZipFile(path):
        pass


def _open_script(path: Path, config: FeatureConfig, threads: int | None, fingerprint: bool, device: Any):
    _check_zip(path)
    module = load_script(path, device=device)[0]
    return module, script_sha256(module) if fingerprint else ""


def _open_program(path: Path, config: FeatureConfig, threads: int | None, fingerprint: bool, device: Any):
    _check_zip(path)
    program = torch.export.load(str(path))
    digest = program_sha256(program) if fingerprint else ""
    if torch.device(device).type != "cpu":  # the graph names its capture device: move it whole
        from torch.export.passes import move_to_device_pass

        program = move_to_device_pass(program, torch.device(device))
    return ProgramCore(program.module()), digest


def _open_package(path: Path, config: FeatureConfig, threads: int | None, fingerprint: bool, device: Any):
    digest = package_sha256(path) if fingerprint else ""  # a zip: a torn file fails here
    return AotiCore(path), digest


def _open_onnx(path: Path, config: FeatureConfig, threads: int | None, fingerprint: bool, device: Any):
    require("onnx", "onnxruntime", needed_by="running an ONNX file", hint=ONNX_HINT)
    digest = onnx_sha256(path) if fingerprint else ""
    return OnnxRuntimeCore(onnx_session(path, threads)), digest


def _openvino_errors() -> tuple[type[BaseException], ...]:
    """What reading an IR raises on a file that is not one: the XML parser's error (the hash reads the .xml
    first), OpenVINO's (RuntimeErrors)."""
    import xml.etree.ElementTree as ET

    return (RuntimeError, OSError, ValueError, ET.ParseError)


def _open_openvino(path: Path, config: FeatureConfig, threads: int | None, fingerprint: bool, device: Any):
    require("openvino", needed_by="running an OpenVINO IR file", hint=OPENVINO_HINT)
    import openvino as ov

    openvino_weights(path)  # the .bin beside it, or a clear error
    digest = openvino_sha256(path) if fingerprint else ""
    return OpenVinoCore(ov.Core().compile_model(str(path), "CPU", openvino_config(threads))), digest


@dataclass(frozen=True)
class FormatReader:
    """How files of one format are opened, and what a file that fails to open was expected to be."""

    expected: str  # "<a file of this format> that <its loader> can read", for the corrupt-file error
    open: Callable[..., tuple[nn.Module, str]]  # (path, config, threads, fingerprint, device) -> (module, sha256)
    errors: Callable[[], tuple[type[BaseException], ...]]  # what its libraries raise on a corrupt file
    entry: bool = True  # the opened module is a core: put the artifact's entry point for the mode around it
    cpu_only: bool = False  # runs on the CPU only here


READERS: dict[str, FormatReader] = {
    "torchscript": FormatReader("a TorchScript archive (.pt) that torch.jit.load", _open_script, _zip_errors, False),
    "exported": FormatReader("a torch.export program (.pt2) that torch.export.load", _open_program, _zip_errors),
    "onnx": FormatReader("an ONNX model (.onnx) that ONNX Runtime", _open_onnx, _onnx_errors, cpu_only=True),
    "onnx-int8": FormatReader("an int8 ONNX model (.onnx) that ONNX Runtime", _open_onnx, _onnx_errors, cpu_only=True),
    "aoti": FormatReader(
        "an AOTInductor package (.pt2) that libtorch's AOTIModelPackageLoader",
        _open_package,
        _zip_errors,
        cpu_only=True,
    ),
    "openvino": FormatReader(
        "an OpenVINO IR (.xml + .bin) that OpenVINO", _open_openvino, _openvino_errors, cpu_only=True
    ),
}


@contextlib.contextmanager
def reading(path: str | Path, fmt: str) -> Iterator[None]:
    """Re-raise what ``fmt``'s libraries raise on a corrupt, truncated or foreign file as an
    :class:`~w2vlab._contract.ArtifactError` that names the format (w2vlab's own errors pass as they are)."""
    reader = READERS[check_format(fmt)]
    try:
        yield
    except W2vlabError:
        raise
    except reader.errors() as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ArtifactError(
            f"{path} is not {reader.expected} can read ({type(e).__name__}: {first}); "
            f"a truncated or corrupt copy? copy or export it again"
        ) from e


def open_format(
    path: str | Path,
    fmt: str,
    mode: str,
    config: FeatureConfig | None = None,
    threads: int | None = None,
    fingerprint: bool = True,
    device: str | torch.device = "cpu",
    pooling: str = "masked",
) -> tuple[Callable[..., torch.Tensor], str]:
    """Open ``path`` as a callable with the TorchScript artifact's signature for ``mode``, and its
    content hash (``""`` if ``fingerprint`` is false), computed from the same load where the
    format allows it (TorchScript, ``.pt2``).  The file is opened by ``READERS[fmt]``.

    Args:
        fmt: one of :data:`w2vlab._contract.FORMATS`
        config: the feature extractor's :class:`FeatureConfig` (default: w2v-bert-2.0's); gives
            the feature width and the waveform minimums
        threads: ONNX Runtime intra-op threads, OpenVINO inference threads (ONNX and OpenVINO formats only)
        device: where the weights go (TorchScript and ``.pt2``; ONNX Runtime, OpenVINO and AOTInductor
            packages compiled here run on the CPU);
            pass inputs on that device.  TorchScript archives carry no device constant (see
            :func:`w2vlab.export._torchscript.unbake_devices`), so ``map_location`` is enough; a ``.pt2``
            program names its capture device in its graph (factory ``device=``, ``.to()``
            metadata asserts) and is moved with ``torch.export.passes.move_to_device_pass``.
        pooling: the metadata's ``pooling``; a toolkit-pooling preprocessed file takes ``clip_rows``
            too (:mod:`w2vlab.runtime._entry`).
    Raises:
        ArtifactError: the file is corrupt, truncated or of another format (the message names ``fmt``).
    """
    check_mode(mode)
    reader = READERS[check_format(fmt)]
    config = config if config is not None else FeatureConfig()
    if reader.cpu_only and torch.device(device).type != "cpu":
        where = {"aoti": "compiled for the CPU", "openvino": "run on OpenVINO's CPU plugin"}.get(
            fmt, "run on ONNX Runtime's CPU provider"
        )
        raise InputError(f"{fmt} files are {where} here; received device={device!s}")
    with reading(path, fmt):
        module, digest = reader.open(Path(path), config, threads, fingerprint, device)
    if not reader.entry:
        return module, digest
    if mode == "preprocessed":
        entry = preprocessed_entry(module, config.feature_dim, pooling)
    else:
        entry = ProgramWaveformEntry(module, config)
    if fmt in LABELLED_FORMATS:  # per-tensor activation scales: one clip at a time (w2vlab._contract)
        entry = ClipByClip(entry, mode, pooling)
    return entry.eval(), digest


def load_format(
    path: str | Path,
    fmt: str,
    mode: str,
    config: FeatureConfig | None = None,
    threads: int | None = None,
    device: str | torch.device = "cpu",
    pooling: str = "masked",
) -> Callable[..., torch.Tensor]:
    """:func:`open_format` without the hash."""
    return open_format(path, fmt, mode, config, threads, fingerprint=False, device=device, pooling=pooling)[0]
