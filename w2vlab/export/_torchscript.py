"""TorchScript: compile the encoder core (script, else trace), wrap it per mode, save it.

``torch.jit.script`` cannot compile HF's ``Wav2Vec2BertModel`` (on torch 2.13 it stops at
``Failed to get source for Wav2Vec2BertConfig.__init__``), so the core is traced with a padded
two-clip example of an unusual length (:func:`trace_example`), and a small *scripted* entry
point around the traced core (:mod:`w2vlab.runtime._entry`) keeps what tracing cannot: the optional
mask, input checks, clear errors, and in waveform mode the whole frontend.

torch >= 2.9 deprecates every ``torch.jit`` entry point in favour of ``torch.export``; those
DeprecationWarnings are silenced around w2vlab's own calls (:func:`w2vlab.runtime._loaders.quiet_jit`).
While tracing, FutureWarnings from libraries are dropped too; any other warning is recorded in
the metadata (``export.compile_warnings``).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from w2vlab._contract import check_mode
from w2vlab._features import FeatureConfig
from w2vlab.runtime._entry import MASK_DTYPE, core_for, preprocessed_entry, waveform_encoder
from w2vlab.runtime._loaders import quiet_jit

logger = logging.getLogger(__name__)

# Example input for tracing and capture: two clips, the second padded, of a length no default uses.
TRACE_FRAMES, TRACE_VALID = 123, 77


@dataclass
class TraceInfo:
    """How the core was compiled, for the metadata."""

    path: str  # "script" or "trace"
    script_error: str = ""  # why torch.jit.script was not used
    example_shape: tuple[int, ...] = ()
    example_valid_frames: tuple[int, ...] = ()
    warnings: list[str] = field(default_factory=list)  # warnings seen while compiling, see _kept


def trace_example(feature_dim: int, pooling: str = "masked") -> tuple[torch.Tensor, ...]:
    """Seeded features [2, 123, feature_dim] and int32 mask [2, 123], the second clip valid for 77 rows;
    toolkit pooling adds clip_rows [2] = (123, 78): the second clip ends in a half row."""
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, TRACE_FRAMES, feature_dim, generator=g)  # (2, T, F)
    mask = torch.ones(2, TRACE_FRAMES, dtype=MASK_DTYPE)  # (2, T)
    mask[1, TRACE_VALID:] = 0
    if pooling == "toolkit":
        return features, mask, torch.tensor([TRACE_FRAMES, TRACE_VALID + 1])
    return features, mask


def _kept(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """Warnings worth recording: not TorchScript's own deprecation, not libraries' FutureWarnings."""
    return sorted(
        {
            f"{w.category.__name__}: {w.message}"
            for w in caught
            if not (issubclass(w.category, DeprecationWarning) and "torch.jit" in str(w.message))
            and not issubclass(w.category, FutureWarning)
        }
    )


def try_script(module: nn.Module) -> tuple[torch.jit.ScriptModule | None, str]:
    """``(torch.jit.script(module), "")``, or ``(None, why)`` when TorchScript cannot compile it."""
    with quiet_jit(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # library notices hit while TorchScript probes attributes
        try:
            return torch.jit.script(module), ""
        except Exception as e:  # TorchScript raises many types (OSError, NotSupportedError, RuntimeError)
            return None, re.sub(r" at 0x[0-9a-f]+", "", f"{type(e).__name__}: {str(e).splitlines()[0]}")


def compile_core(model: nn.Module, feature_dim: int) -> tuple[torch.jit.ScriptModule, TraceInfo]:
    """Script the core if TorchScript can compile it, else trace it on :func:`trace_example`."""
    core = core_for(model).eval()
    scripted, reason = try_script(core)
    if scripted is not None:
        return scripted, TraceInfo("script")
    logger.info("torch.jit.script failed (%s); tracing instead", reason)
    example = trace_example(feature_dim, model.pooling_choice)
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        traced = torch.jit.trace(core, example, check_trace=False)
    unbake_devices(traced)
    return traced, TraceInfo("trace", reason, tuple(example[0].shape), (TRACE_FRAMES, TRACE_VALID), _kept(caught))


def device_constants(module: torch.jit.ScriptModule) -> list[str]:
    """The ``Device`` constants of ``module``'s inlined graph, e.g. ``['cpu']``: devices fixed at
    compile time, which a run on another device would not follow (``map_location`` moves
    tensors, not these)."""
    graph = module.inlined_graph  # held: its nodes die with it
    return [
        str(n.output().toIValue())
        for n in graph.findAllNodes("prim::Constant")
        if n.output().type().kind() == "DeviceObjType"
    ]


def unbake_devices(traced: torch.jit.ScriptModule) -> int:
    """Make a traced module's devices follow its inputs; returns how many constants it replaced.

    Tracing records ``device=x.device`` as a constant (HF's relative-position
    ``torch.arange(..., device=query.device)``, twice in every attention layer), so a trace made
    on the CPU would build those tensors on the CPU when run on a GPU.  Each ``Device`` constant
    becomes ``prim::device`` of the first tensor input of the method that holds it, which is
    what ``x.device`` compiles to under ``torch.jit.script``.  The model runs on one device, so
    that input is on the device the constant stood for, and values are unchanged.  Uses
    TorchScript's graph API (``torch._C``): there is no public one.
    """
    replaced = 0
    for sub in traced.modules():
        for name in sub._c._method_names():
            graph = sub._c._get_method(name).graph
            constants = [n for n in graph.findAllNodes("prim::Constant") if n.output().type().kind() == "DeviceObjType"]
            if not constants:
                continue
            source = next((v for v in graph.inputs() if v.type().kind() == "TensorType"), None)
            if source is None:
                raise RuntimeError(f"{sub.original_name}.{name} fixes a device but takes no tensor to read one from")
            device = graph.create("prim::device", [source])
            device.output().setType(torch._C.DeviceObjType.get())
            device.insertBefore(next(iter(graph.nodes())))
            for constant in constants:
                constant.output().replaceAllUsesWith(device.output())
                constant.destroy()
            replaced += len(constants)
    return replaced


def script_module(module: nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script(module)`` with TorchScript's deprecation warnings silenced."""
    with quiet_jit():
        return torch.jit.script(module)


def wrap(
    mode: str, core: torch.jit.ScriptModule, config: FeatureConfig, pooling: str = "masked"
) -> torch.jit.ScriptModule:
    """The scripted artifact module for ``mode`` and ``pooling`` (the eager model's ``pooling_choice``,
    which :func:`compile_core` compiled ``core`` for) around the compiled core."""
    if check_mode(mode) == "preprocessed":
        return script_module(preprocessed_entry(core, config.feature_dim, pooling))
    return script_module(waveform_encoder(core, config, pooling))


def save_script(module: torch.jit.ScriptModule, path: str | Path, extra_files: Mapping[str, str] | None = None) -> None:
    """``torch.jit.save`` with ``extra_files`` (name -> text) stored in the archive's ``extra/``."""
    with quiet_jit():
        torch.jit.save(module, str(path), _extra_files=dict(extra_files or {}))
