"""The public API: what each package's ``__all__`` promises resolves, is documented, and is cheap to import."""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("w2vlab", "w2vlab.runtime", "w2vlab.model", "w2vlab.export", "w2vlab.corpus", "w2vlab.lab", "w2vlab.bench")


def _doc_script():
    spec = importlib.util.spec_from_file_location("make_library_doc", ROOT / "scripts" / "make_library_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_resolves_from_a_private_module(name):
    package = importlib.import_module(name)
    assert package.__all__ == sorted(set(package.__all__)) and package.__all__, name
    for public in package.__all__:
        obj = getattr(package, public)
        home = getattr(obj, "__module__", None)
        if home is not None and home.startswith("w2vlab"):  # defined here, in an internal module
            assert home.rsplit(".", 1)[-1].startswith("_"), f"{name}.{public} lives in public module {home}"
    assert dir(package) == package.__all__
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        package.nope  # noqa: B018


def test_the_library_map_is_generated_from_the_api():
    doc = _doc_script()
    text = (ROOT / "docs" / "library.md").read_text()
    assert text == doc.render(), "docs/library.md is stale: run python scripts/make_library_doc.py"
    for name in PACKAGES:
        for public in importlib.import_module(name).__all__:
            assert f"| `{public}` |" in text, f"{name}.{public} is missing from docs/library.md"


def test_import_w2vlab_is_cheap_and_never_reaches_the_exporter():
    code = (
        "import json, sys, w2vlab, w2vlab.runtime, w2vlab.export\n"
        "cheap = sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules)\n"
        "w2vlab.load_artifact\n"
        "print(json.dumps({'cheap': cheap, 'loaded': sorted(m for m in sys.modules if m.startswith('w2vlab.'))}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    seen = json.loads(out.stdout)
    assert seen["cheap"] == [], seen
    assert "w2vlab.runtime._artifact" in seen["loaded"]
    assert not [m for m in seen["loaded"] if m.startswith(("w2vlab.export.", "w2vlab.model."))], seen["loaded"]
