"""Shared fixtures: tiny demo checkpoints (built once per session) and the audio fixtures."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from w2vlab.demo import write_demo_checkpoint

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return write_demo_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def pruned_dir(tmp_path_factory) -> Path:
    return write_demo_checkpoint(tmp_path_factory.mktemp("ckpt") / "pruned", pruned=True)


@pytest.fixture(scope="session")
def speech_files() -> list[Path]:
    files = sorted(DATA.glob("speech_*.wav"))
    assert files, f"no speech fixtures in {DATA}; run scripts/make_audio_fixtures.sh"
    return files
