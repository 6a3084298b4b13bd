"""Shared fixtures: tiny demo checkpoints (built once per session) and the audio fixtures."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from w2vlab.model._demo import write_demo_checkpoint

DATA = Path(__file__).parent / "data"
# Modules that take minutes (the wheel's fresh venv, the two AOTInductor compiles with a cold
# inductor cache): started first, so that the pytest-xdist workers of scripts/run_tests.sh end together.
LONGEST_FIRST = ("test_wheel.py", "test_cpp_consumer.py", "test_bench.py", "test_browser.py", "test_report.py")


@pytest.hookimpl(tryfirst=True)  # before -m deselects: the notebooks' slow mark must be there by then
def pytest_collection_modifyitems(items: list) -> None:
    for item in items:
        if item.path.suffix == ".ipynb":  # a whole tutorial in its own Jupyter kernel: the full suite's
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return write_demo_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def pruned_dir(tmp_path_factory) -> Path:
    return write_demo_checkpoint(tmp_path_factory.mktemp("ckpt") / "pruned", pruned=True)


@pytest.fixture(scope="session")
def tiny_all_formats(tmp_path_factory, tiny_dir) -> tuple[Path, tuple[str, ...], list]:
    """The tiny demo exported in both modes to every format this environment writes without a compiler:
    (directory, formats, the parity cases it was verified on).  Exported once per run and shared
    by the pytest-xdist workers (under a lock; the export itself is atomic), because each such
    export costs about 30 s of CPU.  The demo weights are deterministic, so every worker's
    ``tiny_dir`` holds the same model.  Tests must copy it before changing anything in it."""
    from w2vlab._contract import ALL_FORMATS, MODES, onnx_available
    from w2vlab.export._pipeline import export
    from w2vlab.export._suite import build_suite

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: this run's root
    out = shared / "tiny_all_formats" / "art"  # alone in its parent, which tests check for staging leftovers
    formats = ALL_FORMATS if onnx_available() else ("torchscript", "exported")
    cases = build_suite(lengths=(560, 16160, 40037), batches=((16160, 8000, 561),))  # 6 clips
    with open(shared / "tiny_all_formats.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.is_dir():
            out.parent.mkdir(exist_ok=True)
            export(tiny_dir, out, modes=MODES, formats=formats, cases=cases, progress=False)
    return out, formats, cases


_NO_W2VLAB = """
import importlib.abc, sys
class _NoW2vlab(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "w2vlab":
            raise ImportError("w2vlab is deliberately unavailable in this test")
sys.meta_path.insert(0, _NoW2vlab())
"""


def run_card_snippet(artifact: Path, epilogue: str, cwd: Path) -> None:
    """Run the first Python block of ``artifact``'s README (pointed at ``artifact``) and then ``epilogue``,
    in a subprocess where importing w2vlab fails: the card's promise that torch + transformers suffice."""
    readme = (artifact / "README.md").read_text()
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    snippet = snippet.replace('artifact_dir = "w2vbert_speaker"', f"artifact_dir = {str(artifact)!r}")
    code = _NO_W2VLAB + snippet + "\nassert 'w2vlab' not in sys.modules\n" + epilogue
    subprocess.run([sys.executable, "-c", code], check=True, cwd=cwd, timeout=120)


@pytest.fixture(scope="session")
def speech_files() -> list[Path]:
    files = sorted(DATA.glob("speech_*.wav"))
    assert files, f"no speech fixtures in {DATA}; run scripts/make_audio_fixtures.sh"
    return files
