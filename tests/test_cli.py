"""The command line and the seed's export script: thin front-ends over the library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from w2vlab.artifact import load_artifact
from w2vlab.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cli_artifact(tmp_path_factory, tiny_dir):
    out = tmp_path_factory.mktemp("cli") / "art"
    assert main(["export", "--model-path", str(tiny_dir), "--output", str(out), "--mode", "both"]) == 0
    return out


def test_export_prints_parity_and_refuses_to_clobber(cli_artifact, tiny_dir, capsys):
    assert main(["export", "--model-path", str(tiny_dir), "--output", str(cli_artifact)]) == 2
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
    assert json.loads(capsys.readouterr().out)["format"] == "w2vlab-artifact/1"


def test_verify_passes_for_its_model_and_fails_for_another(cli_artifact, tiny_dir, tmp_path, capsys):
    assert main(["verify", str(cli_artifact), "--model-path", str(tiny_dir)]) == 0
    assert "verify: PASS" in capsys.readouterr().out
    other = tmp_path / "other"
    assert main(["demo-checkpoint", str(other), "--seed", "1"]) == 0
    assert main(["verify", str(cli_artifact), "--model-path", str(other)]) == 1
    assert "verify: FAIL" in capsys.readouterr().out


def test_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["export", "--model-path", str(tmp_path / "missing"), "--output", str(tmp_path / "o")]) == 2
    assert "model path not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    (tmp_path / "not_audio.wav").write_text("hello")
    assert main(["info", str(tmp_path)]) == 2
    assert "no metadata.json" in capsys.readouterr().err


def test_seed_export_script(tmp_path, tiny_dir):
    out = tmp_path / "seed"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "export_w2vbert_torchscript.py"), "--preprocess",
                    "--model-path", str(tiny_dir), "--output", str(out)], check=True, capture_output=True, timeout=300)
    assert (out / "w2vbert_speaker_script_preprocessed.pt").is_file()
    assert load_artifact(out).metadata["artifacts"]["preprocessed"]["parity"]["passed"]
