"""The artifact contract: what an exporter writes and a consumer reads.

An artifact directory holds, per mode and format, one file (names in :data:`FILES`), the
feature extractor's config in ``feature_extractor/``, ``metadata.json`` (schema checked by
:func:`validate_metadata`), ``parity.json`` and a model card.  Every file carries the same
metadata inside (TorchScript, ``.pt2`` and AOTInductor packages as an extra file of their zip,
ONNX in ``metadata_props``, OpenVINO IR in its ``<rt_info>``) and is identified by a content hash of
what runs: graph code and every tensor, never the metadata (:func:`script_sha256`, :func:`program_sha256`,
:func:`onnx_sha256`, :func:`package_sha256`, :func:`openvino_sha256`).

Exporter and consumer both import this module and never each other.  It imports nothing of
w2vlab's and no heavy library at import time: torch and onnx are imported by the hash
functions that need them (an OpenVINO IR is read as XML and bytes, without openvino).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

SAMPLE_RATE = 16000  # Hz: what the encoder takes (w2v-bert-2.0's feature extractor refuses other rates)
# /2: the TorchScript hash covers the whole module (frontend included); /3: the pooling choice is
# recorded, and preprocessed programs take the extractor's int32 mask (+ clip_rows when pooling is toolkit)
FORMAT_TAG = "w2vlab-artifact/3"
MODES = ("preprocessed", "waveform")
# How the speaker head pools an odd frame count's half row (the extractor's last stacked row, half
# padding, mask 0): "toolkit" pools every row the extractor made for the clip, that one included,
# as WeSpeaker and the reference recipe do; "masked" pools the rows whose mask is 1.
POOLINGS = ("toolkit", "masked")
FORMATS = ("torchscript", "exported", "onnx", "onnx-int8", "aoti", "openvino")
ONNX_FORMATS = ("onnx", "onnx-int8")
# Reduced-precision copies, judged by their own bounds: one that misses them is refused alone (the
# verified fp32 files are kept), and the loaders run each one clip at a time (dynamic int8 takes one
# activation scale per tensor, so in a padded batch a clip's embedding would depend on its neighbours).
LABELLED_FORMATS = ("onnx-int8",)
ZIP_FORMATS = ("torchscript", "exported", "aoti")  # zips: the metadata is their extra/metadata.json
# `--format all`: every format but AOTInductor's, whose export compiles C++ (about a minute for the
# tiny demo on 2 cores) and needs a compiler, and OpenVINO's, an optional extra of its own; ask for
# them by name.
ALL_FORMATS = ("torchscript", "exported", "onnx", "onnx-int8")
FILES = {
    **{("torchscript", mode): f"w2vbert_speaker_script_{mode}.pt" for mode in MODES},
    **{("exported", mode): f"w2vbert_speaker_exported_{mode}.pt2" for mode in MODES},
    **{("onnx", mode): f"w2vbert_speaker_{mode}.onnx" for mode in MODES},
    **{("onnx-int8", mode): f"w2vbert_speaker_{mode}_int8.onnx" for mode in MODES},
    **{("aoti", mode): f"w2vbert_speaker_aoti_{mode}.pt2" for mode in MODES},
    # OpenVINO IR: the graph in the .xml, its weights in the .bin of the same stem beside it
    **{("openvino", mode): f"w2vbert_speaker_{mode}_openvino.xml" for mode in MODES},
}
DEFAULT_OUTPUT = Path("artifacts/w2vbert_speaker")  # where `w2vlab export` writes by default
SUITES = ("full", "quick")  # parity suites (w2vlab.export._suite.named_suite), the default first
DEMO_SIZES = ("tiny", "small", "full")  # the built-in demo checkpoints (w2vlab.model._demo.SIZES), smallest first
METADATA_FILE = "metadata.json"  # beside the files, and inside TorchScript / .pt2 zips as extra/metadata.json
PARITY_FILE = "parity.json"
CARD_FILE = "README.md"
EXTRACTOR_DIR = "feature_extractor"
EXTRACTOR_CONFIG = "preprocessor_config.json"
ONNX_METADATA_KEY = "w2vlab_metadata"  # key in an ONNX model's metadata_props
CORPUS_ARK, CORPUS_SCP = "embeddings.ark", "embeddings.scp"  # an embed-corpus output directory's embeddings
# what an evaluation set's directory holds: its trials and the clips they name (tests/data/voices_eval)
EVAL_FILES = ("trials.txt", "wav.scp")
ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")
ONNX_HINT = "pip install 'w2vlab[onnx]'  (in a checkout: pip install -e '.[onnx]'; onnx, onnxruntime, onnxscript)"
OPENVINO_HINT = 'pip install "w2vlab[openvino]"'
# OpenVINO IR is written for preprocessed mode only: OpenVINO 2026.4's ONNX frontend refuses the waveform
# program's float64 DFT (its RDFT takes f32, f16 or bf16)
OPENVINO_MODES = ("preprocessed",)
OPENVINO_METADATA_KEY = "w2vlab_metadata"  # an element of an OpenVINO IR's <rt_info>, the metadata in its value
# Top-level keys every metadata.json has, and the keys of each mode's entry.
METADATA_KEYS = (
    "format",
    "artifacts",
    "sample_rate",
    "feature_dim",
    "embedding_dim",
    "min_num_samples",
    "export",
    "versions",
    "feature_extractor",
    "model",
    "pooling",
)
MODE_KEYS = ("inputs", "output", "formats")
FORMAT_ENTRY_KEYS = ("file", "parity", "content_sha256")


# --------------------------------------------------------------------------- errors
#
# What a user causes and can fix (a bad file, an argument, a missing extra) raises a subclass of
# W2vlabError; the CLI prints those as one line and exits 2, and shows a traceback for anything
# else (a bug).  Each also derives from the built-in its callers caught before (ValueError,
# ImportError), so ``except ValueError`` keeps working.


class W2vlabError(Exception):
    """Base of the errors a user causes and can fix: the message says what was received and what to do."""


class InputError(W2vlabError, ValueError):
    """Bad input: an audio file or array, a source list, an argument, a config that cannot be used as given."""


class AudioTooShortError(InputError):
    """A clip has fewer samples, at the model's rate, than the feature extractor needs (two analysis frames)."""


class ArtifactError(InputError):
    """The directory or file is not a usable w2vlab artifact (missing, foreign, corrupt, tampered or mixed up)."""


class MissingDependencyError(W2vlabError, ImportError):
    """An optional package is not installed; the message says which extra installs it."""


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; expected one of {MODES}")
    return mode


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise InputError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
    return pooling


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    return fmt


def compiler_available() -> bool:
    """Whether a C++ compiler is on PATH (AOTInductor export compiles the program with it)."""
    import shutil

    return any(shutil.which(name) for name in ("c++", "g++", "clang++"))


def require_compiler() -> None:
    """Raise :class:`MissingDependencyError` with the install command when no C++ compiler is on PATH
    (``--format aoti``)."""
    if not compiler_available():
        raise MissingDependencyError(
            "--format aoti compiles C++ and no compiler (c++, g++, clang++) is on PATH; "
            "install one (apt-get install g++) or choose another format"
        )


def onnx_available() -> bool:
    """Whether the optional ONNX extra (onnx, onnxruntime, onnxscript) is installed."""
    return all(importlib.util.find_spec(name) is not None for name in ONNX_PACKAGES)


def require(*names: str, needed_by: str, hint: str) -> None:
    """Raise :class:`MissingDependencyError` unless every package in ``names`` is installed.

    Args:
        needed_by: what needs them, for the message ("ONNX export", "--engine ray").
        hint: how to install them (e.g. :data:`ONNX_HINT`).
    """
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise MissingDependencyError(f"{needed_by} needs {', '.join(missing)}, which {verb} not installed; run: {hint}")


# --------------------------------------------------------------------------- metadata


def validate_metadata(metadata: Any, source: str = "metadata") -> dict[str, Any]:
    """Check the format tag and the schema; returns ``metadata``.  Raises :class:`ArtifactError`."""
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{source} is a JSON {type(metadata).__name__}; expected an object")
    if metadata.get("format") != FORMAT_TAG:
        raise ArtifactError(
            f"{source} has format {metadata.get('format')!r}; this w2vlab reads {FORMAT_TAG!r} "
            f"(re-export the model with this version)"
        )
    missing = [key for key in METADATA_KEYS if key not in metadata]
    modes = metadata.get("artifacts") or {}
    for mode, entry in modes.items():
        if mode not in MODES:
            raise ArtifactError(f"{source} lists mode {mode!r}; expected some of {MODES}")
        missing += [f"artifacts.{mode}.{key}" for key in MODE_KEYS if key not in entry]
        for fmt, file_entry in entry.get("formats", {}).items():
            if fmt not in FORMATS:
                raise ArtifactError(f"{source} lists format {fmt!r} for {mode}; expected some of {FORMATS}")
            missing += [f"artifacts.{mode}.formats.{fmt}.{k}" for k in FORMAT_ENTRY_KEYS if k not in file_entry]
    if missing or not modes:
        raise ArtifactError(f"{source} lacks {missing or ['any artifact']}; it is not a complete w2vlab metadata file")
    return metadata


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """``metadata.json`` of an artifact directory, validated."""
    directory = Path(directory)
    path = directory / METADATA_FILE
    if not directory.is_dir():
        raise FileNotFoundError(f"artifact directory not found: {directory}")
    if not path.is_file():
        raise ArtifactError(f"{directory} has no {METADATA_FILE}; is it a w2vlab export directory?")
    try:
        metadata = json.loads(path.read_text())
    except ValueError as e:
        raise ArtifactError(f"{path} is not valid JSON: {e}") from e
    return validate_metadata(metadata, str(path))


def read_embedded_metadata(path: str | Path, fmt: str) -> dict[str, Any] | None:
    """The metadata stored inside a file of format ``fmt``, or ``None`` when it has none.

    TorchScript and ``.pt2`` files are zips with extra files in ``<archive>/extra/``: read as
    text, nothing is unpickled."""
    check_format(fmt)
    if fmt in ONNX_FORMATS:
        text = onnx_metadata_props(path).get(ONNX_METADATA_KEY, "")
    elif fmt == "openvino":
        element = openvino_rt_info(ET.parse(path).getroot()).find(OPENVINO_METADATA_KEY)
        text = element.get("value", "") if element is not None else ""
    else:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_FILE}")]
            text = archive.read(names[0]).decode() if names else ""
    return json.loads(text) if text else None


def _varint(f: BinaryIO) -> int:
    """One protobuf base-128 varint from ``f``."""
    value = shift = 0
    while byte := f.read(1):
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
    raise ValueError(f"the file ends inside a protobuf varint at byte {f.tell()}")


def onnx_metadata_props(path: str | Path) -> dict[str, str]:
    """An ONNX file's ``metadata_props`` (``ModelProto`` field 14) without parsing its graph.

    The file's top-level protobuf fields are walked and every other one is skipped by its
    length, so the cost does not grow with inline weights: ``onnx.load`` parses them all
    (1.2 s for the full-size int8 file, 823 MB)."""
    require("onnx", needed_by="reading an ONNX file's metadata", hint=ONNX_HINT)
    from google.protobuf.message import DecodeError
    from onnx import StringStringEntryProto

    props: dict[str, str] = {}
    with open(path, "rb") as f:
        end = os.fstat(f.fileno()).st_size
        while f.tell() < end:
            field, wire = divmod(_varint(f), 8)
            if wire in (1, 5):  # fixed 64 / 32 bits
                f.seek(8 if wire == 1 else 4, os.SEEK_CUR)
            elif wire == 0:
                _varint(f)
            elif wire != 2:
                raise ValueError(f"{path} is not an ONNX model: protobuf wire type {wire} before byte {f.tell()}")
            elif field != 14:
                f.seek(_varint(f), os.SEEK_CUR)
            else:
                length = _varint(f)
                data = f.read(length)
                if len(data) != length:
                    raise ValueError(f"{path} is truncated: a metadata_props entry of {length} bytes has {len(data)}")
                try:
                    entry = StringStringEntryProto.FromString(data)
                except DecodeError as e:
                    raise ValueError(f"{path}: unreadable metadata_props entry: {e}") from e
                props[entry.key] = entry.value
        if f.tell() != end:
            raise ValueError(f"{path} is truncated: its last protobuf field ends at byte {f.tell()} of {end}")
    return props


def format_entries(metadata: Mapping[str, Any], mode: str) -> dict[str, dict[str, Any]]:
    """Format -> file entry (``file``, ``parity``, ``content_sha256``) of ``mode``."""
    return dict(metadata["artifacts"][mode]["formats"])


def file_entry(metadata: Mapping[str, Any], mode: str, fmt: str, where: str = "the artifact") -> dict[str, Any]:
    """``mode``'s entry for ``fmt``, or an :class:`ArtifactError` saying what was exported and how to add it."""
    available = list(metadata["artifacts"])
    if check_mode(mode) not in available:
        raise ArtifactError(f"{where} has no {mode!r} artifact; it has {available} (export with --mode {mode})")
    entries = format_entries(metadata, mode)
    if check_format(fmt) not in entries:
        raise ArtifactError(
            f"{where} has no {fmt!r} file for {mode} mode; it has {list(entries)} "
            f"(export with --format {fmt} or --format all)"
        )
    return entries[fmt]


# --------------------------------------------------------------------------- hashing


def canonical_sha256(obj: Any) -> str:
    """sha256 of ``obj`` as canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def update_tensors(digest: Any, tensors: Iterable[tuple[str, Any]]) -> Any:
    """Feed named tensors to ``digest``: name, dtype, shape and bytes of each, in the order given."""
    import torch

    for name, tensor in tensors:
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())  # the tensor's own buffer, not a copy
    return digest


def script_sha256(module: Any) -> str:
    """What a TorchScript module runs: the code of it and every submodule, and every tensor it holds
    (weights and buffers, the waveform frontend's window and filterbank included)."""
    digest = hashlib.sha256()
    for name, sub in sorted(module.named_modules()):
        digest.update(f"{name}|{getattr(sub, 'code', '')}|".encode())
    return update_tensors(digest, sorted(module.state_dict().items())).hexdigest()


def program_sha256(program: Any) -> str:
    """Graph code + every weight, buffer and constant of a ``torch.export`` program; not its extra files."""
    import torch

    digest = hashlib.sha256(program.graph_module.code.encode())
    tensors = {**program.state_dict, **{k: v for k, v in program.constants.items() if isinstance(v, torch.Tensor)}}
    return update_tensors(digest, sorted(tensors.items())).hexdigest()


# ONNX TensorProto data types whose stored bytes (raw_data, or the external data file's span) are
# the tensor's bytes as torch holds them, by the torch dtype name update_tensors hashes.
ONNX_RAW_DTYPES = {
    1: "torch.float32",
    2: "torch.uint8",
    3: "torch.int8",
    6: "torch.int32",
    7: "torch.int64",
    9: "torch.bool",
    10: "torch.float16",
    11: "torch.float64",
    16: "torch.bfloat16",
}


def read_external_bytes(init: Any, base: Path) -> bytes:
    """The bytes of an initializer stored in an external data file (its location is relative to ``base``)."""
    info = {entry.key: entry.value for entry in init.external_data}
    location = Path(info["location"])
    if location.is_absolute() or ".." in location.parts:
        raise ValueError(f"initializer {init.name!r} points outside its model's folder: {location}")
    with open(base / location, "rb") as f:
        f.seek(int(info.get("offset", 0)))
        return f.read(int(info["length"])) if "length" in info else f.read()


def onnx_sha256(path: str | Path) -> str:
    """Nodes, inputs, outputs and initializers of an ONNX graph (external data read); not its
    ``metadata_props``.  Hashed piece by piece: protobuf cannot serialise a graph over 2 GB.

    Each initializer is hashed as :func:`update_tensors` hashes a tensor, from its bytes as
    stored: external ones are read one at a time, so hashing a 2.35 GB model holds its graph and
    one weight, never a second copy of the weights."""
    require("onnx", needed_by="hashing an ONNX file", hint=ONNX_HINT)
    import onnx
    import torch
    from onnx import numpy_helper
    from onnx.external_data_helper import load_external_data_for_tensor

    path = Path(path)
    graph = onnx.load(str(path), load_external_data=False).graph
    digest = hashlib.sha256()
    for proto in (*graph.input, *graph.output, *graph.node):
        digest.update(proto.SerializeToString(deterministic=True))
    for init in sorted(graph.initializer, key=lambda i: i.name):
        dtype = ONNX_RAW_DTYPES.get(init.data_type) if sys.byteorder == "little" else None
        external = init.data_location == init.EXTERNAL
        stored = (read_external_bytes(init, path.parent) if external else init.raw_data) if dtype else b""
        if stored:
            digest.update(f"{init.name}|{dtype}|{tuple(init.dims)}|".encode())
            digest.update(stored)
            continue
        if external:  # typed fields (float_data, ...), an empty tensor, another dtype: through numpy
            load_external_data_for_tensor(init, str(path.parent))
        update_tensors(digest, [(init.name, torch.from_numpy(numpy_helper.to_array(init).copy()))])
    return digest.hexdigest()


def package_sha256(path: str | Path) -> str:
    """Every member of an AOTInductor package (generated code, compiled library, weights) by name and
    bytes, in name order; not the ``extra/`` files, where the metadata goes."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        for name in sorted(n for n in archive.namelist() if "/extra/" not in n):
            digest.update(f"{name}|".encode())
            with archive.open(name) as member:
                for block in iter(lambda: member.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def openvino_rt_info(net: ET.Element) -> ET.Element:
    """The ``<rt_info>`` element of an OpenVINO IR's ``<net>`` root (an empty one, not attached, when it has none)."""
    if net.tag != "net":
        raise ValueError(f"not an OpenVINO IR: its root element is <{net.tag}>, expected <net>")
    found = net.find("rt_info")
    return found if found is not None else ET.Element("rt_info")


def openvino_weights(path: str | Path) -> Path:
    """The ``.bin`` an OpenVINO IR ``.xml`` reads its weights from (same stem, beside it), or an
    :class:`ArtifactError` when it is not there."""
    weights = Path(path).with_suffix(".bin")
    if not weights.is_file():
        raise ArtifactError(
            f"{path} needs its weights file {weights.name} beside it, and it is missing: an OpenVINO IR is "
            f"the .xml and the .bin of the same stem; copy both, or export it again"
        )
    return weights


def openvino_sha256(path: str | Path) -> str:
    """An OpenVINO IR: its ``.bin`` (every weight) byte for byte, then its ``.xml`` (the graph) in canonical form
    (C14N 2.0) with the w2vlab metadata element of ``<rt_info>`` removed.  Read as XML and bytes: no openvino."""
    weights = openvino_weights(path)
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    net = ET.parse(path).getroot()
    rt_info = openvino_rt_info(net)
    for element in rt_info.findall(OPENVINO_METADATA_KEY):
        rt_info.remove(element)
    if len(rt_info) == 0 and rt_info in net:  # an <rt_info> that held only the metadata: as if never added
        net.remove(rt_info)
    digest.update(b"|xml|")
    digest.update(ET.canonicalize(ET.tostring(net, encoding="unicode")).encode())
    return digest.hexdigest()
