"""The explorer: the plain function, and the panel driven programmatically (no browser)."""

from __future__ import annotations

from pathlib import Path

import pytest

from w2vlab.export import export
from w2vlab.contract import onnx_available
from w2vlab.suite import QUICK_LENGTHS, build_suite
from w2vlab.widgets import build_workbench, explore, explorer_panel

DATA = Path(__file__).parent / "data"  # not cwd-relative: pytest may run from anywhere


@pytest.fixture(scope="module")
def bench(tmp_path_factory, tiny_dir):
    out = tmp_path_factory.mktemp("export") / "both"
    formats = ("torchscript", "exported", "onnx-int8") if onnx_available() else ("torchscript", "exported")
    export(tiny_dir, out, modes=("preprocessed", "waveform"), formats=formats,
           cases=build_suite(QUICK_LENGTHS[:2], batches=()), progress=False)
    return build_workbench(tiny_dir, out, DATA)


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
    mode.value = "preprocessed"
    assert not panel.controls["format"].disabled
    panel.controls["clips"].value = ()
    assert out.outputs[0]["text"] == "error: pick at least one clip\n" and panel.result is None
