"""The explorer: the plain function, and the panel driven programmatically (no browser)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from w2vlab.lab._widgets import LABEL_WIDTH, PICKER_MAX_ROWS, build_workbench, explore, explorer_panel

DATA = Path(__file__).parent / "data"  # not cwd-relative: pytest may run from anywhere
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def bench(tiny_all_formats, tiny_dir):
    return build_workbench(tiny_dir, tiny_all_formats[0], DATA)


def test_explore_modes(bench):
    clips = ["speech_en_m3_2s", "speech_en_f2_2s", "synth_16160_odd"]
    for mode in ("preprocessed", "waveform"):
        for batched in (False, True):
            result = explore(bench, mode, clips, batched)
            assert result.report.passed, result.report
            assert len(result.report.clips) == 3 and result.reference.shape == result.candidate.shape
    naive = explore(bench, "naive", clips)
    assert not naive.report.passed and naive.report.label == "naive trace (why not)"
    with pytest.raises(ValueError, match="unknown clips"):
        explore(bench, "waveform", ["nope"])


def test_explore_every_format(bench):
    clips = ["speech_en_m3_2s", "synth_16160_odd"]
    formats = sorted(bench.artifacts["waveform"])
    assert {"torchscript", "exported"} <= set(formats)
    for fmt in formats:
        for mode in ("preprocessed", "waveform"):
            result = explore(bench, mode, clips, batched=True, format=fmt)
            assert result.report.label == f"{mode}{'' if fmt == 'torchscript' else ' ' + fmt} (padded batch)"
            assert result.report.passed and result.report.worst_cosine >= (0.999 if fmt == "onnx-int8" else 0.99999)
            assert result.report.worst_max_abs_diff <= (0.1 if fmt == "onnx-int8" else 1e-5), result.report
    with pytest.raises(ValueError, match="no 'tflite' file"):
        explore(bench, "waveform", clips, format="tflite")


def test_panel_redraws_for_each_mode(bench):
    panel = explorer_panel(bench)
    out, mode = panel.controls["output"], panel.controls["mode"]
    assert "**preprocessed**" in out.outputs[0]["data"]["text/markdown"]
    for value, label in (("waveform", "**waveform"), ("naive", "**naive trace (why not)**")):
        mode.value = value
        assert out.outputs[0]["data"]["text/markdown"].startswith(label)
        assert len(out.outputs) == 3  # the table and two figures
    panel.controls["batched"].value = True
    mode.value = "preprocessed"
    assert "(padded batch)" in out.outputs[0]["data"]["text/markdown"]
    assert panel.result.report.label == "preprocessed (padded batch)" and panel.result.report.passed
    assert [c.name for c in panel.result.report.clips] == list(panel.controls["clips"].value)
    panel.controls["format"].value = "exported"
    assert panel.result.report.label == "preprocessed exported (padded batch)" and panel.result.report.passed
    mode.value = "naive"
    assert panel.controls["format"].disabled and panel.result.report.label == "naive trace (why not)"
    assert panel.controls["batched"].disabled  # the naive trace sees one clip at a time
    mode.value = "preprocessed"
    assert not panel.controls["format"].disabled and not panel.controls["batched"].disabled
    panel.controls["clips"].value = ()
    assert out.outputs[0]["text"] == "error: pick at least one clip\n" and panel.result is None


@pytest.fixture
def png_figures():
    """Figures displayed into an ``Output`` carry ``image/png``, as under the notebook's inline backend
    (outside a kernel IPython formats them as text only)."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.pylabtools import select_figure_formats

    fresh = not InteractiveShell.initialized()
    select_figure_formats(InteractiveShell.instance(), {"png"})
    yield
    if fresh:
        InteractiveShell.clear_instance()


def test_panel_walkthrough_shows_what_explore_returns(bench, png_figures):
    """Notebook 03's former section 5, as a test: each click redraws the table (verdict and clip count)
    and both figures as PNG; no clip is an error line in place of the table; the state the notebook leaves
    the panel in shows exactly the report ``explore`` returns for the same choice."""
    panel = explorer_panel(bench)
    c, out = panel.controls, panel.controls["output"]
    assert (c["mode"].value, c["batched"].value) == ("preprocessed", False)
    assert c["clips"].value == tuple(sorted(bench.clips)[:3])  # the first three clips, alphabetically

    def table() -> str:
        assert len(out.outputs) == 3 and all("image/png" in o["data"] for o in out.outputs[1:])  # + 2 figures
        return out.outputs[0]["data"]["text/markdown"]

    assert table().startswith("**preprocessed**: PASS (3 clips")
    c["mode"].value = "waveform"
    assert table().startswith("**waveform**: PASS (3 clips")
    c["batched"].value = True
    assert table().startswith("**waveform (padded batch)**: PASS (3 clips")
    c["mode"].value = "naive"
    assert table().startswith("**naive trace (why not)**: FAIL (3 clips")
    c["clips"].value = ()
    assert len(out.outputs) == 1 and "pick at least one clip" in out.outputs[0]["text"]
    clips = ["speech_en_m3_1p01s", "speech_de_2s", "speech_stereo_44k", "synth_561"]
    c["mode"].value = "waveform"
    c["clips"].value = tuple(clips)
    assert table() == explore(bench, "waveform", clips, batched=True).report.to_markdown()
    assert table().startswith("**waveform (padded batch)**: PASS (4 clips")


def test_panel_layout(bench):
    import ipywidgets as w

    panel = explorer_panel(bench)
    c = panel.controls
    labelled = [c["mode"], c["format"], c["batched"], c["clips"]]
    assert list(panel.children) == [*labelled, c["output"]]  # one column, output last
    assert {control.style.description_width for control in labelled} == {LABEL_WIDTH}  # labels line up
    assert c["batched"].indent  # the checkbox keeps the label column empty, its box under the others
    assert isinstance(c["format"], w.ToggleButtons) and len(c["format"].options) > 1
    # Every clip in view without scrolling (15 fixtures and synthetic clips, under the cap).
    assert len(c["clips"].options) <= PICKER_MAX_ROWS and c["clips"].rows == len(c["clips"].options)
    for value in ("naive", "waveform", "naive", "preprocessed"):  # disabled flags follow every change
        c["mode"].value = value
        assert c["format"].disabled is c["batched"].disabled is (value == "naive")


def test_panel_with_one_format_names_it(bench):
    import ipywidgets as w

    only_ts = replace(bench, artifacts={m: {"torchscript": f["torchscript"]} for m, f in bench.artifacts.items()})
    panel = explorer_panel(only_ts)
    fmt = panel.controls["format"]
    assert isinstance(fmt, w.HTML) and fmt.value == "torchscript"  # a plain line, no one-button toggle
    assert not any(isinstance(child, w.ToggleButtons) and child.description == "format" for child in panel.children)
    assert fmt.style.description_width == LABEL_WIDTH
    panel.controls["mode"].value = "waveform"
    assert panel.result.report.label == "waveform" and panel.result.report.passed
    panel.controls["mode"].value = "naive"
    assert panel.controls["batched"].disabled and panel.result.report.label == "naive trace (why not)"


def test_picker_rows_capped(bench):
    many = {f"synth_{i:02d}": np.zeros(16000, np.float32) for i in range(PICKER_MAX_ROWS + 4)}
    few = dict(list(bench.clips.items())[:2])
    assert explorer_panel(replace(bench, clips=many)).controls["clips"].rows == PICKER_MAX_ROWS
    assert explorer_panel(replace(bench, clips=few)).controls["clips"].rows == 2


@pytest.mark.parametrize("name", ["03_parity_explorer.ipynb", "06_beyond_torchscript.ipynb"])
def test_notebook_carries_widget_state(name):
    """The committed notebook shows the panel before any cell runs: the panel cell's output is a
    widget view, and the saved state holds that model and every model it refers to."""
    nb = json.loads((NOTEBOOKS / name).read_text())
    state = nb["metadata"]["widgets"][WIDGET_STATE]["state"]
    views = [
        out["data"][WIDGET_VIEW]["model_id"]
        for cell in nb["cells"]
        if cell["cell_type"] == "code"
        for out in cell["outputs"]
        if WIDGET_VIEW in out.get("data", {})
    ]
    assert views, f"{name}: no cell output displays a widget; run scripts/save_widget_state.py {name}"
    missing = [v for v in views if v not in state]
    assert not missing, f"{name}: views {missing} have no saved state; run scripts/save_widget_state.py"

    def refs(value):  # "IPY_MODEL_<id>" references, anywhere in a model's state
        if isinstance(value, str):
            return [value[len("IPY_MODEL_") :]] if value.startswith("IPY_MODEL_") else []
        if isinstance(value, dict):
            return [r for v in value.values() for r in refs(v)]
        if isinstance(value, list):
            return [r for v in value for r in refs(v)]
        return []

    seen, todo = set(), list(views)
    while todo:  # everything reachable from the views is saved
        model_id = todo.pop()
        if model_id in seen:
            continue
        assert model_id in state, f"{name}: model {model_id} is referenced but not saved"
        seen.add(model_id)
        todo.extend(refs(state[model_id]["state"]))
    # The saved panel is today's layout (mode, format, batch, clips, output), not an older one.
    panels = [v for v in views if state[v]["model_name"] == "VBoxModel"]
    assert len(panels) == 1, f"{name}: expected one panel view, got {[state[v]['model_name'] for v in views]}"
    children = [state[ref]["state"] for ref in refs(state[panels[0]]["state"]["children"])]
    assert [c["_model_name"] for c in children] == [
        "ToggleButtonsModel",
        "HTMLModel" if name.startswith("03") else "ToggleButtonsModel",  # 03: TorchScript only
        "CheckboxModel",
        "SelectMultipleModel",
        "OutputModel",
    ], f"{name}: stale panel; run scripts/save_widget_state.py"
    assert {
        c.get("style") and state[c["style"][len("IPY_MODEL_") :]]["state"]["description_width"] for c in children[:4]
    } == {LABEL_WIDTH}
    report = children[-1]["outputs"][0]["data"]["text/markdown"]
    assert "PASS" in report, f"{name}: the saved panel should show a passing report, not {report[:80]!r}"
