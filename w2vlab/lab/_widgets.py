"""The parity explorer: ipywidgets controls over one plain function, :func:`explore`.

The panel only builds controls and redraws an output area; every number comes from
:func:`explore`, which the notebook (and nbval, and the tests) also call directly.  Modes:
``preprocessed`` and ``waveform`` run the exported artifacts, in each format the artifact has
(TorchScript, ``.pt2``, ONNX); ``naive`` runs the fragile
HF-extractor-in-forward trace, kept in memory to show why w2vlab does not ship it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2vlab._contract import FORMATS, MODES, format_entries, read_metadata, require
from w2vlab._parity import ParityBounds, ParityReport, compare, format_bounds
from w2vlab.export._suite import Case, audio_files, build_suite, candidate_fn, case_lengths, embed_suite, reference_fn
from w2vlab.model._checkpoint import feature_extractor_for, load_speaker_encoder
from w2vlab.runtime._artifact import load_artifact

EXPLORER_MODES = (*MODES, "naive")  # the artifact's modes, and the naive trace to show why not
MODE_LABELS = {"preprocessed": "preprocessed", "waveform": "waveform", "naive": "naive trace (why not)"}
LABEL_WIDTH = "64px"  # the panel's label column: every control's description gets this width
PICKER_MAX_ROWS = 16  # the clip picker shows every clip without scrolling, up to this many


@dataclass
class Workbench:
    """What the explorer compares: the eager model, the HF extractor, artifacts and clips."""

    model: torch.nn.Module
    fe: Any
    artifacts: dict[str, dict[str, Any]]  # mode -> format -> reloaded module (or .pt2 / ONNX Runtime callable)
    clips: dict[str, np.ndarray]  # name -> 16 kHz mono float32
    naive: Any = None  # built on first use: tracing it takes a moment


def build_workbench(
    model_path: str | Path,
    artifact_dir: str | Path,
    audio_dir: str | Path | None = None,
    checkpoint: str | Path | None = None,
    config: Any = None,
) -> Workbench:
    """Load the eager model (``model_path`` + optional speaker ``checkpoint`` and override ``config``, as
    for export), every mode and format of the artifact, and the clips (``audio_dir``'s + a few synthetic)."""
    metadata = read_metadata(artifact_dir)
    loaded = load_speaker_encoder(model_path, checkpoint, config, pooling=metadata["pooling"])  # as exported
    artifacts = {
        mode: {fmt: load_artifact(artifact_dir, mode, fmt).module for fmt in format_entries(metadata, mode)}
        for mode in metadata["artifacts"]
    }
    cases = build_suite(lengths=(561, 16160, 48000), batches=(), audio=audio_files(audio_dir) if audio_dir else ())
    shortest = loaded.min_num_samples or 0  # an x-vector head needs more audio than the extractor
    clips = {c.name: c.waves[0] for c in cases if not c.batched and len(c.waves[0]) >= shortest}
    return Workbench(loaded.model, feature_extractor_for(loaded), artifacts, clips)


@dataclass
class Exploration:
    report: ParityReport
    reference: torch.Tensor  # [N, D] eager embeddings
    candidate: torch.Tensor  # [N, D] the mode's embeddings

    def figures(self) -> list:
        from w2vlab.lab._plots import plot_embedding_scatter, plot_parity

        return [
            plot_parity(self.report),
            plot_embedding_scatter(self.reference, self.candidate, title=self.report.label),
        ]


def explore(
    bench: Workbench, mode: str, clips: Sequence[str], batched: bool = False, format: str = "torchscript"
) -> Exploration:
    """Compare ``mode`` (in ``format``: torchscript, exported, onnx or onnx-int8) against HF
    extractor + eager model on the chosen clips, with that format's bounds.

    ``batched`` runs the clips as one padded batch (not available for the naive trace, which
    only ever sees one fixed-length example and has no format).
    """
    if mode not in EXPLORER_MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {EXPLORER_MODES}")
    if not clips:
        raise ValueError("pick at least one clip")
    missing = [c for c in clips if c not in bench.clips]
    if missing:
        raise ValueError(f"unknown clips {missing}; available: {sorted(bench.clips)}")
    waves = tuple(bench.clips[c] for c in clips)
    if batched and mode != "naive" and len(waves) > 1:
        cases = [Case("batch", waves)]
    else:
        cases = [Case(name, (w,)) for name, w in zip(clips, waves)]
    if mode == "naive":
        from w2vlab.export._naive import naive_waveform_trace

        if bench.naive is None:
            bench.naive = naive_waveform_trace(bench.model, bench.fe)
        candidate = lambda case: bench.naive.module(torch.from_numpy(case.waves[0])[None])  # noqa: E731
    elif mode not in bench.artifacts:
        raise ValueError(f"this artifact has no {mode!r} module; it has {sorted(bench.artifacts)}")
    elif format not in bench.artifacts[mode]:
        raise ValueError(
            f"this artifact has no {format!r} file for {mode}; it has {sorted(bench.artifacts[mode])} "
            f"(export with --format all for every format)"
        )
    else:
        candidate = candidate_fn(mode, bench.artifacts[mode][format], bench.fe, bench.model.pooling_choice)
    reference = reference_fn(bench.model, bench.fe, bench.model.pooling_choice)
    _, ref, cand = embed_suite(cases, reference, candidate, progress=False)
    names = list(clips)  # one row per clip, batched or not
    label = MODE_LABELS[mode] + (f" {format}" if mode != "naive" and format != "torchscript" else "")
    bounds = ParityBounds() if mode == "naive" else format_bounds(format, mode)  # int8: cosine >= 0.999
    report = compare(
        ref,
        cand,
        names=names,
        label=label + (" (padded batch)" if cases[0].batched else ""),
        bounds=bounds,
        num_samples=case_lengths(cases),
    )
    return Exploration(report, ref, cand)


def explorer_panel(bench: Workbench):
    """An ipywidgets panel: mode and format toggles, batch checkbox, clip picker, and an output area.

    Returns the ``VBox``; its ``.children[-1]`` is the output area, redrawn on every change
    (and once at start).  ``panel.controls`` gives the controls by name and ``panel.result``
    the last :class:`Exploration` (None after an error).  Every control carries the same label
    width, so the labels line up.  The format toggle and the batch checkbox are disabled for the
    naive trace, which has neither; an artifact with a single format gets a plain
    line naming it (an ``HTML`` widget) instead of a one-button toggle.
    """
    require("ipywidgets", "IPython", needed_by="the parity explorer", hint="pip install 'w2vlab[lab]'")
    import ipywidgets as w

    def labelled(control):  # the same label column for every control
        control.style.description_width = LABEL_WIDTH
        if isinstance(control, w.ToggleButtons):  # lay it out as ipywidgets lays out other one-line
            control.add_class("widget-inline-hbox")  # controls; otherwise its label sits above the buttons
            control.style.button_width = "auto"  # "naive trace (why not)" in full, not cut to a fixed width
        return control

    names = sorted(bench.clips)
    modes = [m for m in EXPLORER_MODES if m == "naive" or m in bench.artifacts]
    mode = labelled(w.ToggleButtons(options=[(MODE_LABELS[m], m) for m in modes], value=modes[0], description="mode"))
    formats = [f for f in FORMATS if any(f in by_format for by_format in bench.artifacts.values())] or ["torchscript"]
    choose_format = len(formats) > 1
    if choose_format:
        fmt = labelled(w.ToggleButtons(options=formats, value=formats[0], description="format"))
    else:  # nothing to choose: say which format runs (an HTML widget shows its label, a Label does not)
        fmt = labelled(w.HTML(value=formats[0], description="format"))
    batched = labelled(w.Checkbox(value=False, description="run as one padded batch", indent=True))
    rows = max(1, min(PICKER_MAX_ROWS, len(names)))  # every clip in view up to the cap
    picker = labelled(w.SelectMultiple(options=names, value=tuple(names[:3]), rows=rows, description="clips"))
    out = w.Output()

    def redraw(_change=None) -> None:
        out.outputs = ()
        panel.result = None
        batched.disabled = mode.value == "naive"  # the naive trace has no file and sees one clip at a time
        if choose_format:
            fmt.disabled = batched.disabled
        try:
            result = explore(bench, mode.value, list(picker.value), batched.value, fmt.value)
        except ValueError as e:
            out.append_stdout(f"error: {e}\n")
            return
        panel.result = result
        from IPython.display import Markdown

        out.append_display_data(Markdown(result.report.to_markdown()))
        for fig in result.figures():
            out.append_display_data(fig)

    for control in (mode, fmt, picker, batched) if choose_format else (mode, picker, batched):
        control.observe(redraw, names="value")
    panel = w.VBox([mode, fmt, batched, picker, out])
    panel.controls = {"mode": mode, "format": fmt, "clips": picker, "batched": batched, "output": out}
    panel.result = None
    redraw()
    return panel
