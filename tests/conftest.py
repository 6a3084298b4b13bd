"""Shared fixtures: tiny demo checkpoints (built once per session) and the audio fixtures."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from w2vlab.demo import write_demo_checkpoint

DATA = Path(__file__).parent / "data"
# Modules that take minutes (the two AOTInductor compiles alone take about 2 min with a cold
# inductor cache): started first, so that the pytest-xdist workers of scripts/run_tests.sh end together.
LONGEST_FIRST = ("test_cpp_consumer.py", "test_bench.py", "test_browser.py", "test_report.py")


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


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
