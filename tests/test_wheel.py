"""The wheel: its dependencies match the imports, and it works outside the checkout.

The quick tests read ``w2vlab/`` and ``pyproject.toml``: every third-party import is a core
dependency, or belongs to an extra and sits where only that extra's users get (inside a function, or
in a module that checks first) behind a check whose ``ImportError`` names the extra; and with every
extra's packages hidden, every module but the lab's plots still imports.  The slow test builds the
wheel, installs it with ``[report]`` into a fresh venv and runs the commands from a temporary folder.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from w2vlab.lab._report import NOTEBOOKS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "w2vlab"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
GUARDS = re.compile(r"^(require\w*|onnx_available|find_spec)$")  # calls that check an optional package first
EXTRA_ONLY_MODULES = {"w2vlab/lab/_plots.py": "lab"}  # imported only by the notebooks and the widgets


# --------------------------------------------------------------------------- which distribution is whose


def _requirements(specs: list[str]) -> list[Requirement]:
    """The requirements, the project's own extras (``w2vlab[lab]``) expanded."""
    out = []
    for spec in specs:
        req = Requirement(spec)
        if canonicalize_name(req.name) == "w2vlab":
            out += _requirements([s for e in req.extras for s in PYPROJECT["project"]["optional-dependencies"][e]])
        elif req.marker is None or req.marker.evaluate():
            out.append(req)
    return out


def closure(specs: list[str]) -> set[str]:
    """The distributions ``specs`` install, with everything they require (as installed here)."""
    seen: set[str] = set()
    todo = [(r.name, frozenset(r.extras)) for r in _requirements(specs)]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in seen and not extras:
            continue
        seen.add(key)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for spec in requires:
            req = Requirement(spec)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *extras}):
                todo.append((req.name, frozenset(req.extras)))
    return seen


CORE = {canonicalize_name(r.name) for r in _requirements(PYPROJECT["project"]["dependencies"])}
EXTRAS = {name: closure(specs) for name, specs in PYPROJECT["project"]["optional-dependencies"].items()}
OWNERS = {mod: {canonicalize_name(d) for d in dists} for mod, dists in md.packages_distributions().items()}


# --------------------------------------------------------------------------- where each import sits


def _imports(tree: ast.Module):
    """(import node, top-level module, chain of enclosing functions) for every absolute third-party import."""

    def walk(node, stack):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from walk(child, [*stack, child])
            elif isinstance(child, ast.Import | ast.ImportFrom):
                names = [a.name for a in child.names] if isinstance(child, ast.Import) else [child.module]
                for name in names if not getattr(child, "level", 0) else []:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in ("w2vlab", "__future__"):
                        yield child, name, stack
            else:
                yield from walk(child, stack)

    yield from walk(tree, [])


def _called(node: ast.AST) -> set[str]:
    return {
        c.func.id if isinstance(c.func, ast.Name) else c.func.attr
        for c in ast.walk(node)
        if isinstance(c, ast.Call) and isinstance(c.func, ast.Name | ast.Attribute)
    }


def _checks_first(node: ast.AST) -> bool:
    """Calls require(...) / onnx_available() / find_spec(...), or catches ImportError (``except`` or
    ``contextlib.suppress``)."""
    handlers = [h for h in ast.walk(node) if isinstance(h, ast.ExceptHandler) and h.type is not None]
    suppressed = [c for c in ast.walk(node) if isinstance(c, ast.Call) and ast.unparse(c.func).endswith("suppress")]
    return (
        any(GUARDS.match(name) for name in _called(node))
        or any("ImportError" in ast.unparse(h.type) for h in handlers)
        or any("ImportError" in ast.unparse(c) for c in suppressed)
    )


def _private(tree: ast.Module) -> set[ast.AST]:
    """Functions named ``_x`` and the methods of classes named ``_X``: callable only from their module."""
    methods = {f for c in ast.walk(tree) if isinstance(c, ast.ClassDef) and c.name.startswith("_") for f in c.body}
    return {f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and (f.name.startswith("_") or f in methods)}


def _guarded(fn: ast.FunctionDef, functions: list, private: set, seen: frozenset = frozenset()) -> bool:
    """``fn`` checks first, or is private and every function of its module that calls it is guarded."""
    if _checks_first(fn):
        return True
    callers = [f for f in functions if f is not fn and fn.name in _called(f)]
    return (
        fn in private
        and bool(callers)
        and all(f in seen or _guarded(f, functions, private, seen | {fn}) for f in callers)
    )


def import_problems() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text())
        functions = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)]
        private = _private(tree)
        for node, name, stack in _imports(tree):
            where = f"{rel}:{node.lineno} import {name}"
            dists = OWNERS.get(name.split(".")[0], set())
            if dists & CORE:
                continue
            extras = sorted(e for e, members in EXTRAS.items() if dists & members)
            if not extras:
                found = ", ".join(sorted(dists)) or "not installed here"
                problems.append(f"{where} ({found}): in no extra and not a core dependency")
            elif not stack:
                module_checks = any(_checks_first(s) for s in tree.body if s.lineno < node.lineno)
                if EXTRA_ONLY_MODULES.get(rel) not in extras or not module_checks:
                    problems.append(f"{where}: [{'/'.join(extras)}] at module level, without a check before it")
            elif not any(_guarded(f, functions, private) for f in stack):
                problems.append(f"{where}: [{'/'.join(extras)}] in {stack[-1].name}(), which checks for it nowhere")
    return problems


def test_every_third_party_import_is_core_or_behind_its_extra():
    assert "w2vlab" not in CORE and {"torch", "transformers", "numpy"} <= CORE
    assert {"matplotlib", "papermill", "ipykernel"} <= EXTRAS["report"], "report includes the lab's packages"
    assert not CORE & {"jupyterlab", "ipykernel", "ipywidgets", "matplotlib", "librosa"}
    assert import_problems() == []


def test_the_import_check_catches_what_it_should(monkeypatch, tmp_path):
    """A plain module-level matplotlib import, an unguarded public function, a package of no extra."""
    pkg = tmp_path / "w2vlab"
    pkg.mkdir()
    (pkg / "bad.py").write_text(
        "import matplotlib\nimport yaml_not_declared_anywhere\n\n"
        "def public():\n    import onnx\n\n"
        "def checked():\n    require('onnx')\n    import onnx\n\n"
        "def _helper():\n    import onnx\n\n"
        "def entry():\n    require('onnx')\n    _helper()\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    assert import_problems() == [
        "w2vlab/bad.py:1 import matplotlib: [lab/report] at module level, without a check before it",
        "w2vlab/bad.py:2 import yaml_not_declared_anywhere (not installed here): in no extra and not a core dependency",
        "w2vlab/bad.py:5 import onnx: [onnx] in public(), which checks for it nowhere",
    ]


BLOCK_EXTRAS = """
import importlib, pathlib, sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # import raises ImportError and find_spec says None, as if not installed
failed = {}
for path in sorted(pathlib.Path("w2vlab").rglob("*.py")):
    module = ".".join(path.with_suffix("").parts).removesuffix(".__init__")
    if path.name == "__main__.py":
        continue
    try:
        importlib.import_module(module)
    except ImportError as e:
        failed[module] = str(e)
from w2vlab.lab._report import run_notebook
try:
    run_notebook(None, None, {})
except ImportError as e:
    failed["run_notebook"] = str(e)
import json; print(json.dumps(failed))
"""


def test_core_imports_without_any_extra():
    """Every module imports with the extras' packages hidden; the lab's plots and the report say which extra."""
    hidden = "matplotlib,ipywidgets,IPython,ipykernel,papermill,nbconvert,nbformat,jupyter_client,"
    hidden += "onnx,onnxruntime,onnxscript,onnx_ir,ray,playwright,librosa"
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_EXTRAS, hidden],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    failed = json.loads(done.stdout.splitlines()[-1])
    assert set(failed) == {"w2vlab.lab._plots", "run_notebook"}, failed
    assert "pip install 'w2vlab[lab]'" in failed["w2vlab.lab._plots"]
    assert "w2vlab report needs papermill" in failed["run_notebook"]
    assert "pip install 'w2vlab[report]'" in failed["run_notebook"]


# --------------------------------------------------------------------------- the wheel, installed


def _run(args: list, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def build_wheel(dest: Path, src: Path) -> Path:
    """The checkout's committed and new (not ignored) files copied to ``src``, built there into ``dest``."""
    listed = _run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT).stdout.splitlines()
    for rel in listed:
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((ROOT / rel).read_bytes())
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dest, src]
    _run(pip_wheel, timeout=300)
    (wheel,) = dest.glob("w2vlab-*.whl")
    return wheel


def check_wheel_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        bundle = "w2vlab/lab/_bundle/"
        bundled = {n.removeprefix(bundle) for n in names if n.startswith(bundle)}
        want = {f"notebooks/{n}.ipynb" for n in NOTEBOOKS.values()}
        want |= {f"tests/data/{p.name}" for p in (ROOT / "tests" / "data").glob("*.wav")}
        voices = ROOT / "tests" / "data" / "voices_eval"  # 04's speakers, 06's trials, and the clips
        want |= {f"tests/data/voices_eval/{n}" for n in ("utt2spk", "wav.scp", "trials.txt")}
        want |= {f"tests/data/voices_eval/wav/{p.name}" for p in (voices / "wav").glob("*.flac")}
        want |= {"artifacts/bench/full_quick_2threads_latest.json"}
        assert bundled == want, bundled ^ want
        for rel in bundled:  # copies made at build time, byte for byte the repository's files
            assert z.read(bundle + rel) == (ROOT / rel).read_bytes(), rel
        for name in ("CMakeLists.txt", "w2vlab_embed.cpp"):
            assert z.read(f"w2vlab/runtime/cpp/{name}") == (PACKAGE / "runtime" / "cpp" / name).read_bytes()
        assert all(n.startswith(("w2vlab/", "w2vlab-")) for n in names), sorted(names)


@pytest.mark.slow
def test_the_wheel_works_outside_the_checkout(tmp_path):
    """Build, install into a fresh venv (torch==2.13.0 first: the CPU wheel on disk), run from tmp_path."""
    t0 = time.perf_counter()
    (tmp_path / "src").mkdir()
    wheel = build_wheel(tmp_path / "dist", tmp_path / "src")
    check_wheel_contents(wheel)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], timeout=300)
    py = venv / "bin" / "python"
    _run([py, "-m", "pip", "install", "-q", "torch==2.13.0"], timeout=900)
    _run([py, "-m", "pip", "install", "-q", f"{wheel}[report]"], timeout=900)
    t_install = time.perf_counter() - t0
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter"),  # hides the user's w2vlab kernel (the checkout's venv)
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        MPLBACKEND="Agg",
    )
    _run([py, "-m", "ipykernel", "install", "--sys-prefix", "--name", "w2vlab"], env=env, cwd=tmp_path)
    where = _run([py, "-c", "import w2vlab; print(w2vlab.__file__)"], env=env, cwd=tmp_path).stdout.strip()
    assert Path(where).is_relative_to(venv) and not Path(where).is_relative_to(ROOT), where
    spec = "from jupyter_client.kernelspec import KernelSpecManager as K; print(K().get_kernel_spec('w2vlab').argv[0])"
    assert _run([py, "-c", spec], env=env, cwd=tmp_path).stdout.strip() == str(py), "the report's kernel is the venv's"

    w2vlab = venv / "bin" / "w2vlab"
    run = lambda *args, timeout=600: _run([w2vlab, *args], env=env, cwd=tmp_path, timeout=timeout)  # noqa: E731
    run("demo-checkpoint", "ckpt")
    assert (tmp_path / "ckpt" / "config.json").is_file()
    out = run("export", "--model-path", "ckpt", "--output", "art", "--suite", "quick").stdout
    assert (tmp_path / "art" / "metadata.json").is_file(), out
    wav = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    wav = wav / "w2vlab" / "lab" / "_bundle" / "tests" / "data" / "speech_en_m3_2s.wav"
    run("embed", "art", wav, "--out", "emb.npy")
    assert (tmp_path / "emb.npy").is_file()
    run("verify", "art", "--model-path", "ckpt", "--suite", "quick")
    t_report = time.perf_counter()
    run("report", "--model-path", "ckpt", "--output", "report", "--notebooks", "01", timeout=900)
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["passed"] and [n["status"] for n in summary["notebooks"]] == ["PASS"], summary
    assert (tmp_path / "report" / "01_export_preprocessed.html").is_file()
    print(
        f"wheel {wheel.stat().st_size / 1e6:.2f} MB; build + fresh venv {t_install:.0f} s; "
        f"commands {t_report - t0 - t_install:.0f} s; report (01) {time.perf_counter() - t_report:.0f} s"
    )
