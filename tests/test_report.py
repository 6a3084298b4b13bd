"""``w2vlab report``: the parameterised notebooks run by papermill on a checkpoint, kept as HTML + index.

The quick tests check what is decided before any kernel starts.  The slow ones run real
notebooks in the ``w2vlab`` kernel, one notebook each (the smallest set that proves the point):
01 on the dense demo and 05 on the pruned demo (PASS), 01 with a config that contradicts the
weights (ERROR), and 02 with a pure tone among the clips, whose waveform parity fails for the
reason notebook 02 explains (FAIL).
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from w2vlab.cli import main
from w2vlab.lab import _report as report_module
from w2vlab.lab._report import (
    DENSE_NOTEBOOKS,
    NOTEBOOKS,
    NOTEBOOKS_DIR,
    PRUNED_NOTEBOOKS,
    default_notebooks,
    parse_notebooks,
    render_index,
)

needs_papermill = pytest.mark.skipif(
    importlib.util.find_spec("papermill") is None, reason="the [report] extra (papermill) is not installed"
)
ROW = re.compile(
    r'<tr class="(?P<status>PASS|FAIL|ERROR)"><td>(?:<a href="(?P<html>[^"]+)">)?(?P<name>\w+)(?:</a>)?</td>'
    r'<td><b>(?P=status)</b></td><td class="num">[\d.]+ s</td><td><code>(?P<error>.*?)</code></td>'
)


def index_rows(out: Path) -> dict[str, dict[str, str]]:
    """notebook -> {status, html, error} as index.html lists them."""
    return {m["name"]: m.groupdict() for m in ROW.finditer((out / "index.html").read_text())}


def run_report(capsys, *args: str) -> tuple[int, str]:
    code = main(["report", *map(str, args)])
    return code, capsys.readouterr().out


def assert_written(out: Path, name: str) -> dict:
    """The executed notebook, its HTML with the figures inside, and return the notebook JSON."""
    executed, page = out / f"{name}.ipynb", out / f"{name}.html"
    assert executed.is_file() and page.is_file(), sorted(p.name for p in out.iterdir())
    nb = json.loads(executed.read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1, "papermill injects the parameters right after the parameters cell"
    assert f'output_dir = "{out / "outputs" / name}"' in "".join(injected[0]["source"])
    return nb


# --------------------------------------------------------------------------- before any kernel


def test_notebook_selection(tiny_dir, pruned_dir, tmp_path):
    assert parse_notebooks("05, 01") == ("01", "05")  # run order, whatever the order given
    assert parse_notebooks(["02_export_waveform.ipynb", "04"]) == ("02", "04")
    assert parse_notebooks("06") == ("06",)
    for bad in ("03", "07", "1", ""):
        with pytest.raises(ValueError, match="01, 02, 04, 05, 06"):
            parse_notebooks(bad)
    assert default_notebooks(tiny_dir) == DENSE_NOTEBOOKS == ("01", "02", "04")
    assert default_notebooks(pruned_dir) == PRUNED_NOTEBOOKS == ("01", "02", "04", "05")
    override = tmp_path / "override.json"  # an override that makes the config pruned counts too
    override.write_text(json.dumps({"use_attention": [True, False]}))
    assert default_notebooks(tiny_dir, override) == PRUNED_NOTEBOOKS


def test_every_report_notebook_has_one_parameters_cell_with_the_same_names():
    for name in NOTEBOOKS.values():
        cells = json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
        assert len(tagged) == 1, name
        names = re.findall(r"^(\w+) = None", "".join(tagged[0]["source"]), flags=re.M)
        assert names == ["model_path", "checkpoint", "config", "output_dir", "clips"], (name, names)


def test_the_checkout_notebooks_by_default_else_the_packaged_copies(monkeypatch, tmp_path):
    """In this checkout: notebooks/ (what JupyterLab opens); installed: the copies inside the wheel."""
    repo = Path(__file__).resolve().parents[1]
    assert report_module.default_notebooks_dir() == NOTEBOOKS_DIR == repo / "notebooks"
    assert report_module.PACKAGED_NOTEBOOKS_DIR == repo / "w2vlab" / "lab" / "_bundle" / "notebooks"
    monkeypatch.setattr(report_module, "CHECKOUT_NOTEBOOKS_DIR", tmp_path / "site-packages" / "notebooks")
    assert report_module.default_notebooks_dir() == report_module.PACKAGED_NOTEBOOKS_DIR
    with pytest.raises(FileNotFoundError, match="expected the checkout's notebooks/ or the copies an installed wheel"):
        report_module.write_report(tmp_path, tmp_path / "out", notebooks_dir=tmp_path / "missing")


@needs_papermill
def test_refuses_before_any_notebook_runs(tiny_dir, tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "keep.txt").write_text("someone's file")
    for args, message in (
        ((), "already exists and is not empty; pass --force"),
        (("--notebooks", "03"), "unknown report notebook '03'"),
        (("--audio", tmp_path / "no_such_dir"), "audio directory not found"),
        (("--config", tmp_path / "no.json"), "not found: config"),
    ):
        assert main(["report", "--model-path", str(tiny_dir), "--output", str(out), *map(str, args)]) == 2
        assert message in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_index_escapes_what_it_shows():
    page = render_index(
        {
            "passed": False,
            "started": "t",
            "seconds": 1.0,
            "versions": {"w2vlab": "0"},
            "parameters": {"model_path": "/m<1>", "config": None},
            "notebooks": [
                {
                    "name": "01_export_preprocessed",
                    "status": "FAIL",
                    "seconds": 2.0,
                    "error": "In [3]: AssertionError: a < b",
                    "notebook": "01_export_preprocessed.ipynb",
                    "html": "01_export_preprocessed.html",
                    "output_dir": "outputs/01_export_preprocessed",
                }
            ],
        }
    )
    assert "<code>/m&lt;1&gt;</code>" in page and "not given (the default)" in page
    assert (
        "<code>In [3]: AssertionError: a &lt; b</code>" in page
        and 'w2vlab report: <span class="FAIL">FAIL</span>' in page
    )


# --------------------------------------------------------------------------- real notebooks (papermill)


@pytest.mark.slow
@needs_papermill
def test_report_on_the_demo_checkpoint(tiny_dir, tmp_path, capsys):
    out = tmp_path / "report"
    code, printed = run_report(capsys, "--model-path", tiny_dir, "--output", out, "--notebooks", "01")
    assert code == 0, printed
    assert re.search(r"^PASS  01_export_preprocessed  [\d.]+ s$", printed, re.MULTILINE), printed
    assert index_rows(out) == {
        "01_export_preprocessed": {
            "status": "PASS",
            "html": "01_export_preprocessed.html",
            "name": "01_export_preprocessed",
            "error": "",
        }
    }
    assert_written(out, "01_export_preprocessed")
    assert "data:image/png;base64," in (out / "01_export_preprocessed.html").read_text(), "figures are embedded"
    summary = json.loads((out / "report.json").read_text())
    assert summary["passed"] and summary["parameters"]["model_path"] == str(tiny_dir.resolve())
    artifact = out / "outputs" / "01_export_preprocessed" / "artifact"
    assert (artifact / "metadata.json").is_file(), "the notebook's output_dir is inside the report"
    assert not (out / "outputs" / "01_export_preprocessed" / "demo_checkpoint").exists(), "model_path, not the demo"


@pytest.mark.slow
@needs_papermill
def test_report_on_the_pruned_demo(pruned_dir, tmp_path, capsys):
    out = tmp_path / "report"
    code, printed = run_report(capsys, "--model-path", pruned_dir, "--output", out, "--notebooks", "05")
    assert code == 0, printed
    assert {n: r["status"] for n, r in index_rows(out).items()} == {"05_pruned_students": "PASS"}
    assert_written(out, "05_pruned_students")
    metadata = json.loads((out / "outputs" / "05_pruned_students" / "artifact" / "metadata.json").read_text())
    assert metadata["model"]["encoder_config"]["use_attention"] == [True, False, True, True]


@pytest.mark.slow
@needs_papermill
def test_report_on_a_config_that_contradicts_the_weights(tiny_dir, tmp_path, capsys):
    """Loading fails in the notebook's kernel: ERROR, and the report is still written."""
    override = tmp_path / "wrong_widths.json"
    override.write_text(json.dumps({"intermediate_size": 96}))  # the weights say 64
    out = tmp_path / "report"
    code, printed = run_report(
        capsys, "--model-path", tiny_dir, "--config", override, "--output", out, "--notebooks", "01"
    )
    assert code == 1, printed
    row = index_rows(out)["01_export_preprocessed"]
    assert row["status"] == "ERROR"
    assert re.fullmatch(
        r"In \[\d+\]: CheckpointMismatchError: checkpoint does not match the model: shape mismatch .*"
        r"checkpoint \(64,\) vs model \(96,\)",
        row["error"],
    ), row["error"]
    nb = assert_written(out, "01_export_preprocessed")  # saved up to the failing cell, and rendered
    failed = [
        c
        for c in nb["cells"]
        if c["cell_type"] == "code" and any(o.get("output_type") == "error" for o in c["outputs"])
    ]
    assert len(failed) == 1 and "load_speaker_encoder(ckpt, checkpoint, config)" in "".join(failed[0]["source"])
    assert re.search(
        r"^ERROR 01_export_preprocessed  [\d.]+ s  In \[\d+\]: CheckpointMismatchError", printed, re.MULTILINE
    )
    assert re.search(r"^report FAIL in \d+ s: .*index\.html$", printed, re.MULTILINE), printed


@pytest.mark.slow
@needs_papermill
def test_report_on_clips_whose_parity_fails(tiny_dir, tmp_path, capsys):
    """A 440 Hz tone in the clips: the waveform artifact misses the 1e-5 bound on it (notebook 02,
    section 3: per-bin normalisation amplifies float32 rounding ~3000x), so the export refuses: FAIL."""
    clips = tmp_path / "clips"
    clips.mkdir()
    t = np.arange(32000) / 16000
    sf.write(clips / "tone_440hz.wav", (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32), 16000, subtype="FLOAT")
    out = tmp_path / "report"
    code, printed = run_report(capsys, "--model-path", tiny_dir, "--audio", clips, "--output", out, "--notebooks", "02")
    assert code == 1, printed
    row = index_rows(out)["02_export_waveform"]
    assert row["status"] == "FAIL"
    assert re.fullmatch(
        r"In \[\d+\]: ExportParityError: export refused: reloaded artifact failed parity on "
        r"waveform vs eager: \[&#x27;tone_440hz&#x27;\]",
        row["error"],
    ), row["error"]
    assert_written(out, "02_export_waveform")
    assert not (out / "outputs" / "02_export_waveform" / "artifact").exists(), "a refused export writes nothing"
