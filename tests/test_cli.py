"""The command line and the seed's export script: thin front-ends over the library."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from w2vlab.cli import main
from w2vlab.runtime._artifact import load_artifact

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory, tiny_dir) -> tuple[Path, str]:
    """The artifact directory and what ``w2vlab export`` printed while writing it."""
    out = tmp_path_factory.mktemp("cli") / "art"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", "--model-path", str(tiny_dir), "--output", str(out), "--mode", "both"]) == 0
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def cli_artifact(cli_export) -> Path:
    return cli_export[0]


# ParityReport.headline(): "<label>: PASS on <n> clips; worst cosine <c>, worst L2 <l2>, worst max|diff| <m>,
# worst max|diff|/max|ref| <r> (bounds: cosine >= <b>, max|diff|/max|ref| <= <b>)"
HEADLINE = re.compile(
    r"^(?P<mode>\w+) vs eager: (?P<verdict>PASS|FAIL)(?: \(\d+ clips\))? on (?P<n>\d+) clips; "
    r"worst cosine (?P<cos>\S+), "
    r"worst L2 (?P<l2>\S+), worst max\|diff\| (?P<mad>\S+), worst max\|diff\|/max\|ref\| (?P<rel>\S+) "
    r"\(bounds: cosine >= (?P<min_cos>\S+), max\|diff\|/max\|ref\| <= (?P<max_rel>\S+)\)$",
    re.MULTILINE,
)


def test_export_prints_parity_and_refuses_to_clobber(cli_export, tiny_dir, capsys):
    """The printed parity lines agree with the per-clip numbers the export wrote to parity.json."""
    out, printed = cli_export
    lines = {m["mode"]: m for m in HEADLINE.finditer(printed)}
    assert sorted(lines) == ["preprocessed", "waveform"], printed
    parity = json.loads((out / "parity.json").read_text())
    for mode, line in lines.items():
        clips = parity[mode]["clips"]
        bounds = parity[mode]["bounds"]
        assert int(line["n"]) == len(clips) > 0
        assert float(line["cos"]) == pytest.approx(min(c["cosine"] for c in clips), abs=1e-9)
        assert float(line["l2"]) == pytest.approx(max(c["l2"] for c in clips), rel=1e-2, abs=1e-30)
        assert float(line["mad"]) == pytest.approx(max(c["max_abs_diff"] for c in clips), rel=1e-2, abs=1e-30)
        rels = [c["max_abs_diff"] / c["max_abs_ref"] for c in clips]  # the bounded quantity, recomputed
        assert float(line["rel"]) == pytest.approx(max(rels), rel=1e-2, abs=1e-30)
        assert (float(line["min_cos"]), float(line["max_rel"])) == (bounds["min_cosine"], bounds["max_rel_diff"])
        assert "relative max|diff| (max|ref - cand| / max|ref|) <=" in parity[mode]["bounded"]
        within = all(c["cosine"] >= bounds["min_cosine"] and r <= bounds["max_rel_diff"] for c, r in zip(clips, rels))
        assert line["verdict"] == ("PASS" if within else "FAIL") == "PASS"
    assert f"per-clip numbers in {out / 'parity.json'}" in printed
    assert main(["export", "--model-path", str(tiny_dir), "--output", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_embed_score_info(cli_artifact, speech_files, tmp_path, capsys):
    a, b = speech_files[0], speech_files[1]
    assert main(["embed", str(cli_artifact), str(a), str(b), "--out", str(tmp_path / "e.npy")]) == 0
    embeddings = np.load(tmp_path / "e.npy")
    art = load_artifact(cli_artifact)
    np.testing.assert_allclose(embeddings[0], art.embed_file(a).numpy(), rtol=0, atol=1e-6)
    capsys.readouterr()
    assert main(["score", str(cli_artifact), str(a), str(b)]) == 0
    score = float(capsys.readouterr().out)
    assert score == pytest.approx(art.score(torch.from_numpy(embeddings[0]), torch.from_numpy(embeddings[1])), abs=1e-6)
    assert main(["info", str(cli_artifact)]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "w2vlab-artifact/3"


def test_verify_passes_for_its_model_and_fails_for_another(cli_artifact, tiny_dir, tmp_path, capsys):
    assert main(["verify", str(cli_artifact), "--model-path", str(tiny_dir)]) == 0
    assert "verify: PASS" in capsys.readouterr().out
    other = tmp_path / "other"
    assert main(["demo-checkpoint", str(other), "--seed", "1"]) == 0
    assert main(["verify", str(cli_artifact), "--model-path", str(other), "--suite", "quick"]) == 1
    printed = capsys.readouterr().out
    assert "verify: FAIL" in printed and printed.count(" on 9 clips;") == 2, printed  # 6 clips + a batch of 3, per mode


def test_named_suites():
    from w2vlab.export._suite import DEFAULT_BATCHES, QUICK_LENGTHS, named_suite

    full, quick = named_suite("full"), named_suite("quick")
    assert len(full) == 26 and [len(c.waves) for c in quick] == [1] * len(QUICK_LENGTHS) + [len(DEFAULT_BATCHES[0])]
    assert max(len(w) for c in full for w in c.waves) == 480000 > max(len(w) for c in quick for w in c.waves) == 160000
    with pytest.raises(ValueError, match=r"unknown parity suite 'fast'; expected one of \('full', 'quick'\)"):
        named_suite("fast")


def test_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["export", "--model-path", str(tmp_path / "missing"), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("w2vlab export: error: ") and "model path not found" in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()
    (tmp_path / "not_audio.wav").write_text("hello")
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("w2vlab info: error: ") and "no metadata.json" in err and err.count("\n") == 1, err


def test_user_error_is_one_line_and_exit_2(tmp_path, capsys):
    """An unusable artifact given to `embed` is the user's to fix: one line, exit 2, no traceback."""
    (tmp_path / "metadata.json").write_text("[]")
    assert main(["embed", str(tmp_path), str(tmp_path / "a.wav")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("w2vlab embed: error: ") and "expected an object" in err and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_verbose_prints_the_traceback_of_a_user_error(tmp_path, capsys):
    assert main(["-v", "info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ArtifactError" in err, err
    assert err.rstrip("\n").splitlines()[-1].startswith("w2vlab info: error: ") and "no metadata.json" in err


def test_programming_error_is_not_swallowed(tmp_path, monkeypatch):
    """A bug (here a TypeError in a command) propagates with its traceback instead of a one-line exit 2."""
    from w2vlab import cli

    def broken(args):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setattr(cli, "_info", broken)
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["info", str(tmp_path)])


def test_programming_error_exits_with_a_traceback(tmp_path):
    """Run as a program: the bug's traceback is printed and the exit status is Python's 1, not 2."""
    code = (
        "import sys; from w2vlab import cli\n"
        "def broken(args): raise KeyError('oops')\n"
        "cli._info = broken\n"
        f"sys.exit(cli.main(['info', {str(tmp_path)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback (most recent call last)" in done.stderr, done.stderr
    assert "KeyError: 'oops'" in done.stderr and "error: " not in done.stderr


def test_seed_export_script(tmp_path, tiny_dir):
    out = tmp_path / "seed"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "export_w2vbert_torchscript.py"),
            "--preprocess",
            "--model-path",
            str(tiny_dir),
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (out / "w2vbert_speaker_script_preprocessed.pt").is_file()
    assert load_artifact(out).metadata["artifacts"]["preprocessed"]["formats"]["torchscript"]["parity"]["passed"]


def test_choices_and_defaults_come_from_the_contract():
    """The parser offers exactly the contract's modes, formats and demo sizes (and the demo builds each size)."""
    from w2vlab import _contract as contract
    from w2vlab.cli import build_parser
    from w2vlab.model import _demo as demo

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    options = {name: {a.dest: a for a in parser._actions} for name, parser in sub.items()}
    assert tuple(options["export"]["mode"].choices) == (*contract.MODES, "both")
    assert tuple(options["export"]["format"].choices) == (*contract.FORMATS, "all")
    assert options["export"]["output"].default == contract.DEFAULT_OUTPUT
    for command in ("export", "verify"):
        assert tuple(options[command]["suite"].choices) == contract.SUITES
        assert options[command]["suite"].default == contract.SUITES[0] == "full"
    assert tuple(options["embed"]["format"].choices) == contract.FORMATS
    assert tuple(options["demo-checkpoint"]["size"].choices) == contract.DEMO_SIZES == tuple(demo.SIZES)
