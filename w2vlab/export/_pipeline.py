"""The exporter: load -> reference -> capture -> verify -> write, each step a function below.

1. :func:`load` reads the checkpoint (+ override config, normalised) and its feature extractor;
2. :func:`reference` embeds the parity suite with HF extractor + eager model, once;
3. :func:`capture` compiles TorchScript (:mod:`w2vlab.export._torchscript`) and the other formats
   (:mod:`w2vlab.export._formats`) into the staging directory, then the eager weights are released, so
   at most one copy of the weights is in memory at a time;
4. :func:`verify_files` reloads every file from disk (:mod:`w2vlab.runtime._loaders`, as a consumer
   would) and compares it with the reference, at its format's bounds;
5. :func:`write` stores the final metadata inside each file (without touching the verified
   program: checked) and beside it, with ``parity.json`` and the model card.

Everything happens in a temporary sibling directory that replaces ``output`` only when every
file passed (:mod:`w2vlab._atomic`); a failed export raises :class:`ExportParityError` and leaves
any previous artifact byte-identical.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from torch import nn

from w2vlab._allocator import trim
from w2vlab._atomic import atomic_directory
from w2vlab._contract import (
    CARD_FILE,
    DEFAULT_OUTPUT,
    EXTRACTOR_DIR,
    FILES,
    FORMAT_TAG,
    FORMATS,
    LABELLED_FORMATS,
    METADATA_FILE,
    MODES,
    ONNX_FORMATS,
    ONNX_HINT,
    ONNX_PACKAGES,
    OPENVINO_HINT,
    OPENVINO_MODES,
    PARITY_FILE,
    InputError,
    W2vlabError,
    canonical_sha256,
    check_format,
    check_mode,
    check_pooling,
    require,
    require_compiler,
    validate_metadata,
)
from w2vlab._features import FeatureConfig
from w2vlab._parity import ParityBounds, ParityReport, compare, format_bounds, merge_reports
from w2vlab._version import __version__
from w2vlab.export._card import render_model_card
from w2vlab.export._decisions import (
    NOT_GATED,
    DecisionGate,
    EvalSet,
    TimedProgram,
    decision_effect,
    embed_set,
    gated_entry,
    rank_cases,
    search,
)
from w2vlab.export._formats import capture as capture_program
from w2vlab.export._formats import embed_metadata, export_aoti, export_onnx, export_openvino, export_program
from w2vlab.export._int8 import KEEP_FP32, count_matmuls, quantisable_blocks, quantize_onnx
from w2vlab.export._int8 import recipe as int8_recipe
from w2vlab.export._rewrites import faster_blocks
from w2vlab.export._suite import Case, build_suite, candidate_fn, case_lengths, embed_cases, reference_fn
from w2vlab.export._suite import without_short as _without_short
from w2vlab.export._torchscript import TraceInfo, compile_core, save_script, wrap
from w2vlab.model._checkpoint import LoadedModel, feature_extractor_for, load_speaker_encoder
from w2vlab.runtime._entry import min_program_samples
from w2vlab.runtime._loaders import open_format

logger = logging.getLogger(__name__)


class ExportParityError(W2vlabError, RuntimeError):
    """A reloaded file did not match the eager model; ``reports`` say where."""

    def __init__(self, *failed: ParityReport):
        self.reports = failed
        self.report = failed[0]
        where = "; ".join(f"{r.label}: {list(r.failures)}" for r in failed)
        super().__init__(
            f"export refused: reloaded artifact failed parity on {where}\n" + "\n\n".join(map(str, failed))
        )


@dataclass
class ExportResult:
    output: Path
    metadata: dict[str, Any]
    reports: dict[str, ParityReport]  # TorchScript, per mode
    seconds: float
    format_reports: dict[str, dict[str, ParityReport]] = field(default_factory=dict)  # other format -> mode -> report
    # labelled copies that missed their bounds or the decision gate: not written (the verified files were),
    # format -> mode -> report
    refused: dict[str, dict[str, ParityReport]] = field(default_factory=dict)
    # mode -> what the int8 copy does to the evaluation trials' decisions (kept or refused), as its metadata says
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def report(self) -> ParityReport:
        """The TorchScript reports of every mode merged into one."""
        return merge_reports(list(self.reports.values()), label="export parity")

    @property
    def all_reports(self) -> list[ParityReport]:
        """TorchScript's per mode, then each other format's (their bounds may differ: not merged)."""
        return [*self.reports.values(), *(r for by_mode in self.format_reports.values() for r in by_mode.values())]


@dataclass
class Reference:
    """Eager embeddings of the parity suite: row names and [N, D] embeddings."""

    cases: Sequence[Case]
    names: list[str]
    embeddings: torch.Tensor


# --------------------------------------------------------------------------- steps


def check_request(modes: Sequence[str], formats: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(modes, formats) de-duplicated in contract order, TorchScript always first; errors before any work."""
    if not modes:
        raise InputError(f"no export mode given; expected some of {MODES}")
    for mode in modes:
        check_mode(mode)
    for fmt in formats:
        check_format(fmt)
    formats = tuple(
        f for f in FORMATS if f == "torchscript" or f in formats
    )  # contract order: aoti reuses the .pt2 capture
    if set(formats) & {*ONNX_FORMATS, "openvino"}:  # the OpenVINO IR is converted from the fp32 ONNX file
        asked = ", ".join(f for f in formats if f in (*ONNX_FORMATS, "openvino"))
        require(*ONNX_PACKAGES, needed_by=f"exporting {asked}", hint=ONNX_HINT)
    if "openvino" in formats:
        require("openvino", needed_by="exporting openvino", hint=OPENVINO_HINT)
        if "waveform" in modes:  # OPENVINO_MODES
            raise InputError(
                f"--format openvino writes {OPENVINO_MODES} mode only (OpenVINO's RDFT takes no float64, in which "
                f"the waveform frontend computes its spectrum); received modes {tuple(modes)}"
            )
    if "aoti" in formats:
        require_compiler()
    return tuple(m for m in MODES if m in modes), formats


def load(
    model_path: str | Path, checkpoint: str | Path | None, config: Any, pooling: str | None = None
) -> tuple[LoadedModel, Any]:
    """The eager model (eval mode, pooling as ``pooling`` or its toolkit's) and the HF feature extractor
    it was trained with."""
    logger.info("loading %s", model_path)
    loaded = load_speaker_encoder(model_path, checkpoint, config, pooling=pooling)
    return loaded, feature_extractor_for(loaded)


def reference(model: nn.Module, fe: Any, cases: Sequence[Case], progress: bool) -> Reference:
    """Embed ``cases`` with HF extractor + eager ``model``: what every file is compared with."""
    logger.info("eager reference on %d cases", len(cases))
    names, embeddings = embed_cases(cases, reference_fn(model, fe, model.pooling_choice), progress, "eager reference")
    return Reference(cases, names, embeddings)


def capture(
    model: nn.Module, config: FeatureConfig, modes: Sequence[str], formats: Sequence[str], tmp: Path
) -> tuple[TraceInfo, dict[str, int]]:
    """Write every ``(format, mode)`` file into ``tmp`` under its contract name, without metadata;
    returns the trace facts and the blocks the ONNX files run rewritten (:mod:`w2vlab.export._rewrites`).

    One ``torch.export`` capture per mode serves the ``.pt2`` and the AOTInductor package; a
    second, of the model with :func:`w2vlab.export._rewrites.faster_blocks`, serves the ONNX file and
    the source of its int8 copy and OpenVINO IR (the fp32 ONNX file, or one written under a hidden name
    if ONNX was not asked for), from which :func:`derive_files` makes them later.
    """
    logger.info("compiling the TorchScript core")
    core, info = compile_core(model, config.feature_dim)
    for mode in modes:
        save_script(wrap(mode, core, config, model.pooling_choice), tmp / FILES["torchscript", mode])
    del core
    rewrites: dict[str, int] = {}
    for mode in modes:
        program = onnx_program = None
        for fmt in formats[1:]:
            if fmt in FROM_FP32_ONNX and (onnx_program is not None or "onnx" in formats):
                continue  # derive_files makes it from the fp32 ONNX file written above
            source = " (its fp32 source)" if fmt in FROM_FP32_ONNX else ""
            logger.info("writing the %s %s file%s", mode, fmt, source)
            path = tmp / FILES[fmt, mode]
            if fmt == "exported":
                program = export_program(model, mode, config, path)
            elif fmt == "aoti":
                export_aoti(program if program is not None else capture_program(model, mode, config), mode, path)
            else:  # onnx, or the hidden fp32 source of onnx-int8 / openvino without onnx
                with faster_blocks(model) as rewrites:
                    onnx_program = capture_program(model, mode, config)
                export_onnx(onnx_program, mode, config, _fp32_source(tmp, mode, formats))
    return info, rewrites


# Formats made from the fp32 ONNX file once the eager model is released (:func:`derive_files`), with what each
# step logs and the function that makes it: the int8 copy quantised, the OpenVINO IR converted
FROM_FP32_ONNX = {
    "onnx-int8": ("quantising %s to int8", quantize_onnx),
    "openvino": ("converting %s to OpenVINO IR", export_openvino),
}


def _fp32_source(tmp: Path, mode: str, formats: Sequence[str]) -> Path:
    """The fp32 ONNX file ``mode``'s int8 copy and OpenVINO IR are made from: the written one, or a hidden one
    made for them."""
    fp32 = tmp / FILES["onnx", mode]
    return fp32 if "onnx" in formats else fp32.with_name(f".fp32_{fp32.name}")


def derive_files(tmp: Path, modes: Sequence[str], formats: Sequence[str]) -> None:
    """Each asked-for format of :data:`FROM_FP32_ONNX`, made per mode from its fp32 ONNX source once the caller has
    released the eager model and the captures (:func:`w2vlab.export._int8.quantize_onnx` holds the int8 copy it
    writes, about a third of the fp32 weights).  Hidden sources stay until :func:`drop_fp32_sources`: the decision
    gate may quantise again with more blocks kept fp32."""
    for fmt, (doing, make) in FROM_FP32_ONNX.items():
        if fmt not in formats:
            continue
        for mode in modes:
            fp32 = _fp32_source(tmp, mode, formats)
            logger.info(doing, fp32.name)
            make(fp32, tmp / FILES[fmt, mode])
            trim()


def drop_fp32_sources(tmp: Path, modes: Sequence[str], formats: Sequence[str]) -> None:
    """Remove the hidden fp32 sources :func:`capture` wrote for int8 copies and OpenVINO IR when ONNX itself was
    not asked for."""
    if "onnx" in formats:
        return
    for mode in modes:
        fp32 = _fp32_source(tmp, mode, formats)
        for staged in (fp32, fp32.with_name(fp32.name + ".data")):
            staged.unlink(missing_ok=True)


def verify_file(
    path: Path, fmt: str, mode: str, fe: Any, ref: Reference, bounds: ParityBounds, progress: bool, pooling: str
) -> tuple[ParityReport, dict[str, Any]]:
    """Reload ``path`` as a consumer would and compare it with ``ref``: (report, metadata entry)."""
    config = FeatureConfig.from_extractor(fe)
    logger.info("verifying %s", path.name)
    module, digest = open_format(path, fmt, mode, config, threads=torch.get_num_threads(), pooling=pooling)
    _, candidate = embed_cases(ref.cases, candidate_fn(mode, module, fe, pooling), progress, f"{mode} {fmt}")
    del module
    trim()  # the next file loads into this memory, not on top of it
    report = compare(
        ref.embeddings,
        candidate,
        names=ref.names,
        bounds=format_bounds(fmt, mode, bounds),
        num_samples=case_lengths(ref.cases),
        label=f"{mode} vs eager" if fmt == "torchscript" else f"{mode} {fmt} vs eager",
    )
    entry = {"file": path.name, "parity": report.summary(), "content_sha256": digest}
    data = path.with_name(path.name + ".data")  # ONNX weights past protobuf's 2 GB limit
    if data.exists():
        entry["external_data"] = data.name
    if fmt == "openvino":  # the IR's weights, beside its .xml
        entry["weights"] = path.with_suffix(".bin").name
    return report, entry


def verify_files(
    tmp: Path,
    modes: Sequence[str],
    formats: Sequence[str],
    fe: Any,
    ref: Reference,
    bounds: ParityBounds,
    progress: bool,
    pooling: str,
) -> dict[str, dict[str, tuple[ParityReport, dict[str, Any]]]]:
    """format -> mode -> (report, entry) for every written file that passed; raises :class:`ExportParityError`
    naming every file that missed its bounds when one of them is a full-precision file.  A labelled copy
    (:data:`w2vlab._contract.LABELLED_FORMATS`) that missed its own bounds is refused alone: its files are
    removed from ``tmp`` and its reports come back as ``format -> mode -> report`` in the second value."""
    checked = {
        fmt: {
            mode: verify_file(tmp / FILES[fmt, mode], fmt, mode, fe, ref, bounds, progress, pooling) for mode in modes
        }
        for fmt in formats
    }
    failed = [(fmt, r) for fmt, by_mode in checked.items() for r, _ in by_mode.values() if not r.passed]
    if any(fmt not in LABELLED_FORMATS for fmt, _ in failed):
        raise ExportParityError(*(r for _, r in failed))
    refused = {fmt: {mode: r for mode, (r, _) in checked[fmt].items()} for fmt in dict(failed)}
    for fmt in refused:
        logger.warning("refusing the %s copy: it missed its bounds; the verified files are kept", fmt)
        for mode in modes:
            for path in (tmp / FILES[fmt, mode], tmp / (FILES[fmt, mode] + ".data")):
                path.unlink(missing_ok=True)
        del checked[fmt]
    return checked, refused


def gate_int8(
    tmp: Path,
    modes: Sequence[str],
    formats: Sequence[str],
    fe: Any,
    checks: tuple[Reference, ParityBounds, bool, str],
    checked: dict[str, dict[str, tuple[ParityReport, dict[str, Any]]]],
    refused: dict[str, dict[str, ParityReport]],
    evaluation: tuple[EvalSet, dict[str, np.ndarray], DecisionGate] | None,
) -> dict[str, dict[str, Any]]:
    """mode -> what the int8 copy does to the evaluation trials' decisions (:mod:`w2vlab.export._decisions`),
    for its metadata; the copy is re-quantised with more blocks kept fp32 (and verified again) until it
    passes the gate, or refused like a copy that missed its parity bounds (``checked`` and ``refused`` are
    updated in place).  Without an evaluation set, every mode's entry says so.

    ``checks``: the parity reference, bounds, progress flag and pooling of :func:`verify_file`;
    ``evaluation``: the set, its eager embeddings and the gate."""
    if "onnx-int8" not in checked:
        return {}
    if evaluation is None:
        logger.info("the int8 copy is not gated on decisions: %s", NOT_GATED["why"])
        return {mode: dict(NOT_GATED) for mode in modes}
    entries = {mode: _gate_mode(tmp, mode, formats, fe, checks, checked, evaluation) for mode in modes}
    if all(entry["passed"] for entry in entries.values()):
        return entries
    logger.warning("refusing the onnx-int8 copy: it missed the decision gate; the verified files are kept")
    refused["onnx-int8"] = {mode: report for mode, (report, _) in checked.pop("onnx-int8").items()}
    for mode in modes:
        for path in (tmp / FILES["onnx-int8", mode], tmp / (FILES["onnx-int8", mode] + ".data")):
            path.unlink(missing_ok=True)
    return entries


def _gate_mode(
    tmp: Path,
    mode: str,
    formats: Sequence[str],
    fe: Any,
    checks: tuple[Reference, ParityBounds, bool, str],
    checked: dict[str, dict[str, tuple[ParityReport, dict[str, Any]]]],
    evaluation: tuple[EvalSet, dict[str, np.ndarray], DecisionGate],
) -> dict[str, Any]:
    """:func:`gate_int8` for one mode's copy: measure, search, re-verify what changed."""
    (evalset, eval_ref, gate), (ref, bounds, progress, pooling) = evaluation, checks
    path, source = tmp / FILES["onnx-int8", mode], _fp32_source(tmp, mode, formats)
    scratch, config, built = tmp / f".rank_{path.name}", FeatureConfig.from_extractor(fe), []

    def embed(target: Path, cases: Sequence[Case], desc: str) -> tuple[dict[str, np.ndarray], float]:
        module, _ = open_format(target, "onnx-int8", mode, config, threads=torch.get_num_threads(), pooling=pooling)
        timed = TimedProgram(module)
        embeddings = embed_set(cases, candidate_fn(mode, timed, fe, pooling), progress, desc)
        seconds = timed.seconds
        del module, timed
        trim()
        return embeddings, seconds

    def measure(added: Sequence[str]) -> tuple[dict[str, Any], float]:
        if list(added) != built:
            quantize_onnx(source, path, (*KEEP_FP32, *added))
            built[:] = added
        embeddings, seconds = embed(path, evalset.cases, f"{mode} int8 decisions")
        return decision_effect(eval_ref, embeddings, evalset.trials), seconds

    def rank(added: Sequence[str]) -> dict[str, np.ndarray]:
        quantize_onnx(source, scratch, (*KEEP_FP32, *added))
        return embed(scratch, rank_cases(evalset.cases), f"{mode} int8 ranking")[0]

    steps, ranked = search(gate, quantisable_blocks(source), measure, rank, eval_ref)
    for staged in (scratch, scratch.with_name(scratch.name + ".data")):
        staged.unlink(missing_ok=True)
    entry = gated_entry(evalset, gate, steps, ranked)
    if built and steps[-1].passed:  # the file was rebuilt: verify it again, at its bounds
        report, file_entry = verify_file(path, "onnx-int8", mode, fe, ref, bounds, progress, pooling)
        checked["onnx-int8"][mode] = (report, file_entry)
        entry["passed"] = report.passed
    return entry


def _io_spec(mode: str, config: FeatureConfig, embedding_dim: int, pooling: str) -> dict[str, Any]:
    """The inputs and output of ``mode``'s files as :mod:`w2vlab.runtime._entry` defines them; dtypes are
    what the programs take (the loaders and TorchScript entry points cast any integer dtype)."""
    if mode == "preprocessed":
        inputs = [
            {"name": "input_features", "shape": ["batch", "frames", config.feature_dim], "dtype": "float32"},
            {"name": "attention_mask", "shape": ["batch", "frames"], "dtype": "int32", "optional": True},
        ]
        if pooling == "toolkit":  # each clip's rows, half row included: needed in a padded batch
            inputs.append({"name": "clip_rows", "shape": ["batch"], "dtype": "int64", "optional": True})
    else:
        inputs = [
            {
                "name": "waveform",
                "shape": ["batch", "samples"],
                "dtype": "float32",
                "sample_rate": config.sampling_rate,
            },
            {"name": "lengths", "shape": ["batch"], "dtype": "int64", "optional": True},
        ]
    return {"inputs": inputs, "output": {"name": "embedding", "shape": ["batch", embedding_dim], "dtype": "float32"}}


def build_metadata(
    loaded: LoadedModel,
    fe: Any,
    info: TraceInfo,
    entries: Mapping[str, Mapping[str, dict[str, Any]]],
    refused: Mapping[str, Mapping[str, ParityReport]] | None = None,
    decisions: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything a consumer needs to trust and use the artifact (no paths, no user names).

    ``entries`` maps mode -> format -> that file's entry (file, parity, content_sha256); ``refused``
    format -> mode -> report of the labelled copies that missed their bounds (or, with ``decisions``, mode -> the
    int8 copy's decision entry, the decision gate) and were not written."""
    fe_config = json.loads(fe.to_json_string())
    config = FeatureConfig.from_extractor(fe)
    head = loaded.head
    minimum = max(config.min_num_samples, loaded.min_num_samples or 0)  # an x-vector head needs more rows
    return validate_metadata(
        {
            "format": FORMAT_TAG,
            "artifacts": {
                mode: {**_io_spec(mode, config, head.embedding_dim, head.pooling_choice), "formats": dict(by_format)}
                for mode, by_format in entries.items()
            },
            "sample_rate": config.sampling_rate,
            "feature_dim": config.feature_dim,
            "embedding_dim": loaded.head.embedding_dim,
            "pooling": head.pooling_choice,
            "min_num_samples": minimum,
            "min_duration_s": minimum / config.sampling_rate,
            "min_program_samples": min_program_samples(
                config
            ),  # .pt2/ONNX/aoti programs: pad shorter waveforms to this
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
            },
            "source_weights_sha256": loaded.source_sha256,
            **({"source": loaded.source} if loaded.source else {}),  # another toolkit's checkpoint
            **({"refused": _refused_summary(refused, decisions or {})} if refused else {}),
        },
        "the metadata being exported",
    )


def _refused_summary(
    refused: Mapping[str, Mapping[str, ParityReport]], decisions: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """format -> mode -> why it was refused (the failing clips, or the decision gate's verdict) and its parity
    summary, for the metadata."""
    return {
        fmt: {
            mode: {
                "failed_clips": list(r.failures),
                "parity": r.summary(),
                **({"decisions": decisions[mode]} if fmt == "onnx-int8" and mode in decisions else {}),
            }
            for mode, r in by_mode.items()
        }
        for fmt, by_mode in refused.items()
    }


def write(
    tmp: Path,
    metadata: dict[str, Any],
    checked: Mapping[str, Mapping[str, tuple[ParityReport, Any]]],
    fe: Any,
    refused: Mapping[str, Mapping[str, ParityReport]] | None = None,
) -> None:
    """Store the metadata in every verified file and beside them, with parity.json, the extractor and the card."""
    metadata_json = json.dumps(metadata, indent=2, sort_keys=True) + "\n"
    for fmt, by_mode in checked.items():
        for mode, (_, entry) in by_mode.items():  # raises if storing the metadata changed the verified program
            embed_metadata(tmp / FILES[fmt, mode], fmt, metadata_json, entry["content_sha256"])
    fe.save_pretrained(str(tmp / EXTRACTOR_DIR))
    (tmp / METADATA_FILE).write_text(metadata_json)
    parity = {mode: report.to_dict() for mode, (report, _) in checked["torchscript"].items()}
    parity["formats"] = {
        fmt: {mode: report.to_dict() for mode, (report, _) in by_mode.items()}
        for fmt, by_mode in checked.items()
        if fmt != "torchscript"
    }
    if refused:
        parity["refused"] = {
            fmt: {mode: r.to_dict() for mode, r in by_mode.items()} for fmt, by_mode in refused.items()
        }
    (tmp / PARITY_FILE).write_text(json.dumps(parity, indent=2) + "\n")
    (tmp / CARD_FILE).write_text(render_model_card(metadata))


# --------------------------------------------------------------------------- the whole export


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
    pooling: str | None = None,
    eval_trials: str | Path | None = None,
    gate: DecisionGate = DecisionGate(),
) -> ExportResult:
    """Export the speaker encoder at ``model_path`` to a verified artifact directory ``output``.

    ``pooling``: ``"toolkit"`` or ``"masked"`` (:data:`w2vlab._contract.POOLINGS`); default: as the
    checkpoint's own toolkit pools (toolkit for WeSpeaker and reference ``.pth`` checkpoints).

    ``formats`` adds ``"exported"`` (``torch.export`` ``.pt2``), ``"onnx"`` and ``"onnx-int8"``
    (a dynamic-int8 copy, judged by cosine), ``"aoti"`` and ``"openvino"`` (the fp32 ONNX program as
    OpenVINO IR) files beside the TorchScript archive, which is always
    written (the model card, ``embed`` and the workbench use it).  Every file is verified on
    ``cases`` (default: :func:`w2vlab.export._suite.build_suite`) with :func:`w2vlab._parity.format_bounds`.

    ``eval_trials``: a directory with ``trials.txt`` and ``wav.scp`` (e.g. ``tests/data/voices_eval`` for the
    trained demo): the int8 copy is then also judged by its decisions on those trials against the eager
    model's, kept fp32 block by block until it meets ``gate`` (:mod:`w2vlab.export._decisions`), and its
    metadata and card say what it flips.  Without it the copy is written ungated, and says so.

    Raises:
        ExportParityError: a reloaded full-precision file missed its bounds; nothing is written.  A labelled
            copy that misses its bounds or the decision gate is refused alone (``ExportResult.refused``).
        InputError: ``eval_trials`` lacks a file, or its trials name clips its ``wav.scp`` lacks (checked before
            any work).
        FileExistsError: ``output`` exists and ``force`` is false (checked before any work).
        MissingDependencyError: an ONNX format (or openvino) was asked for without the ``[onnx]`` extra, or openvino
            without the ``[openvino]`` one (checked before any work).
    """
    start = time.perf_counter()
    modes, formats = check_request(modes, formats)
    if pooling is not None:
        check_pooling(pooling)
    evalset = _eval_set(eval_trials, formats)
    output = Path(output)
    with atomic_directory(output, overwrite=force) as tmp:  # fails early on an existing output
        loaded, fe = load(model_path, checkpoint, config, pooling)
        pooled = loaded.head.pooling_choice
        cases = _without_short(build_suite() if cases is None else cases, loaded.min_num_samples)
        ref = reference(loaded.model, fe, cases, progress)
        evaluation = None
        if evalset is not None:
            eager = embed_set(evalset.cases, reference_fn(loaded.model, fe, pooled), progress, "eager decisions")
            evaluation = (evalset, eager, gate)
        info, rewrites = capture(loaded.model, FeatureConfig.from_extractor(fe), modes, formats, tmp)
        loaded = dataclasses.replace(loaded, model=None)  # keep the facts, release the weights
        trim()
        derive_files(tmp, modes, formats)
        checked, refused = verify_files(tmp, modes, formats, fe, ref, bounds, progress, pooled)
        decisions = gate_int8(tmp, modes, formats, fe, (ref, bounds, progress, pooled), checked, refused, evaluation)
        drop_fp32_sources(tmp, modes, formats)
        formats = tuple(fmt for fmt in formats if fmt not in refused)
        entries = {
            mode: {fmt: _file_entry(tmp, fmt, mode, checked, rewrites, decisions) for fmt in formats} for mode in modes
        }
        metadata = build_metadata(loaded, fe, info, entries, refused, decisions)
        write(tmp, metadata, checked, fe, refused)
        for name, data in loaded.files.items():  # beside the programs, e.g. an HF sequence classifier
            (tmp / name).write_bytes(data)
    seconds = time.perf_counter() - start
    logger.info("exported %s (%s) to %s in %.1f s", "+".join(modes), "+".join(formats), output, seconds)
    reports = {fmt: {mode: report for mode, (report, _) in by_mode.items()} for fmt, by_mode in checked.items()}
    return ExportResult(output, metadata, reports.pop("torchscript"), seconds, reports, refused, decisions)


def _eval_set(eval_trials: str | Path | None, formats: Sequence[str]) -> EvalSet | None:
    """The evaluation set the int8 copy is gated on, read before any work; None without one or without a copy."""
    if eval_trials is None:
        return None
    if "onnx-int8" not in formats:
        logger.warning(
            "eval_trials %s: no reduced-precision copy was asked for (formats %s); not read", eval_trials, formats
        )
        return None
    return EvalSet.read(eval_trials)


def _file_entry(
    tmp: Path,
    fmt: str,
    mode: str,
    checked: Mapping[str, Mapping[str, tuple[ParityReport, dict[str, Any]]]],
    rewrites: dict[str, int],
    decisions: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    """A verified file's metadata entry: file, parity, hash; for ONNX the rewrites; for int8 its recipe (with the
    blocks the decision gate kept fp32), its MatMul counts and its decisions."""
    entry = {**checked[fmt][mode][1], **({"rewrites": rewrites} if fmt in (*ONNX_FORMATS, "openvino") else {})}
    if fmt == "onnx-int8":
        steps = decisions.get(mode, {}).get("steps") or [{"kept_fp32_added": []}]
        entry["quantisation"] = int8_recipe((*KEEP_FP32, *steps[-1]["kept_fp32_added"]))
        entry["decisions"] = decisions[mode]
    if fmt in LABELLED_FORMATS:
        entry["matmuls"] = count_matmuls(tmp / FILES[fmt, mode])
    return entry
