"""The explorer panel's format toggle driven through every format, three clips as one padded batch: each
format's report passes its own bounds.  Notebook 06 drove the panel this way in its reader path before
issue #27; it now only opens the panel on the int8 copy."""

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
CLIPS = ("speech_en_m3_2s", "speech_en_f2_2s", "synth_16160_odd")


def test_the_format_toggle_passes_every_format(tiny_all_formats, tiny_dir):
    pytest.importorskip("ipywidgets")
    from w2vlab.lab._widgets import build_workbench, explorer_panel

    out, formats, _ = tiny_all_formats
    panel = explorer_panel(build_workbench(tiny_dir, out, DATA))
    panel.controls["clips"].value = CLIPS
    panel.controls["batched"].value = True
    assert list(panel.controls["format"].options) == list(formats)
    seen = []
    for fmt in reversed(formats):  # torchscript, the toggle's default, last: every value is a change
        panel.controls["format"].value = fmt  # redraws the panel with this format's report and figures
        report = panel.result.report
        assert report.label == f"preprocessed{'' if fmt == 'torchscript' else ' ' + fmt} (padded batch)"
        assert [c.name for c in report.clips] == list(CLIPS) and report.passed, report
        assert report.worst_cosine >= (0.999 if fmt == "onnx-int8" else 0.99999), report
        seen.append(fmt)
    assert sorted(seen) == sorted(formats)
