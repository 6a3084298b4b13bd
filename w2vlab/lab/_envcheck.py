"""The environment doctor: can this Python export, load and plot a w2vlab artifact?

    w2vlab doctor [--artifact DIR] [--json]

Each check imports what it probes inside its own function and ``run_checks`` isolates them,
so one broken package (a torch built without NumPy, a half-installed transformers) is reported
as a failed check instead of crashing the doctor.  A check's ``severity`` says what a failure
means: ``"error"`` (w2vlab cannot work) or ``"warning"`` (a notebook extra or a mismatch worth
knowing about); only errors make ``doctor`` return False.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from w2vlab._contract import METADATA_FILE

KERNEL_NAME = "w2vlab"
SETUP_SCRIPT = "./scripts/setup_notebook_env.sh"
TORCH_FIX = "pip install torch==2.13.0"
NUMPY_FIX = 'pip install "numpy<2"'
TRANSFORMERS_FIX = 'pip install "transformers>=4.45,<6"'


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # what was found, in one line
    fix: str = ""  # a command that repairs a failure; empty when there is nothing to do
    severity: str = "error"  # what a failure means: "error" fails the doctor, "warning" never does


def _python_version() -> tuple[int, int, int]:
    """The running interpreter's version; a function so tests can pretend to be another one."""
    return tuple(sys.version_info[:3])


def _import(name: str) -> Any:
    return importlib.import_module(name)


def _error_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _jit_probe(x: int) -> int:  # module level: torch.jit.script needs the source file
    return x + 1


def check_python() -> Check:
    version = _python_version()
    text = ".".join(map(str, version))
    if version[:2] < (3, 10):
        return Check("python", False, f"Python {text}; w2vlab needs 3.10 or newer", f"{SETUP_SCRIPT} python3.11")
    if version[:2] >= (3, 14):
        return Check(
            "python",
            False,
            f"Python {text}: no numba/librosa wheels; w2vlab reads audio with soundfile and resamples with soxr",
            f"{SETUP_SCRIPT} python3.11",
            "warning",
        )
    return Check("python", True, f"Python {text}")


def check_torch() -> Check:
    try:
        torch = _import("torch")
    except Exception as e:
        return Check("torch", False, f"torch not importable ({_error_line(e)})", TORCH_FIX)
    return Check("torch", True, f"torch {torch.__version__}")


def check_torchscript() -> Check:
    try:
        torch = _import("torch")
    except Exception as e:
        return Check("torchscript", False, f"not checked: torch not importable ({_error_line(e)})", TORCH_FIX)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = torch.jit.script(_jit_probe)(1)
        except Exception as e:
            return Check(
                "torchscript", False, f"TorchScript is disabled in this torch build ({_error_line(e)})", TORCH_FIX
            )
    if result != 2:
        return Check("torchscript", False, f"a scripted x + 1 returned {result!r} for x = 1", TORCH_FIX)
    deprecated = [w for w in caught if issubclass(w.category, DeprecationWarning) and "torch.jit" in str(w.message)]
    if deprecated:
        return Check(
            "torchscript",
            True,
            f'torch.jit.script works; deprecated in torch {torch.__version__} ("{str(deprecated[0].message).strip()}")',
        )
    return Check("torchscript", True, "torch.jit.script works")


def check_numpy() -> Check:
    try:
        np = _import("numpy")
    except Exception as e:
        return Check("numpy", False, f"numpy not importable ({_error_line(e)})", NUMPY_FIX)
    found = f"numpy {np.__version__}"
    try:
        torch = _import("torch")
    except Exception:
        return Check("numpy", False, f"{found}; torch interop not checked: torch not importable", TORCH_FIX, "warning")
    try:
        torch.from_numpy(np.zeros(3))
        torch.zeros(3).numpy()
    except Exception as e:  # "RuntimeError: Numpy is not available": NumPy 2 under a torch < 2.3 build
        return Check("numpy", False, f"{found} but torch cannot exchange arrays with it ({_error_line(e)})", NUMPY_FIX)
    if int(np.__version__.split(".")[0]) >= 2:
        return Check("numpy", False, f"{found}; torch interop works, but w2vlab pins numpy<2", NUMPY_FIX, "warning")
    return Check("numpy", True, f"{found}; torch.from_numpy and .numpy() work")


def check_transformers() -> Check:
    try:
        transformers = _import("transformers")
    except Exception as e:
        return Check("transformers", False, f"transformers not importable ({_error_line(e)})", TRANSFORMERS_FIX)
    found = f"transformers {transformers.__version__}"
    missing = []
    for name in ("Wav2Vec2BertModel", "SeamlessM4TFeatureExtractor"):
        try:
            getattr(transformers, name)
        except Exception as e:  # lazy attributes import their module (and torch) on first access
            missing.append(f"{name}: {_error_line(e)}")
    if missing:
        return Check("transformers", False, f"{found} lacks {'; '.join(missing)}", TRANSFORMERS_FIX)
    return Check("transformers", True, f"{found} with Wav2Vec2BertModel and SeamlessM4TFeatureExtractor")


def _running_version(module: str) -> str:
    try:
        return _import(module).__version__
    except Exception:
        return "not installed"


def check_artifact(artifact_dir: str | Path) -> Check:
    """Compare the torch/transformers an artifact was exported with against the running ones."""
    path = Path(artifact_dir) / METADATA_FILE  # read leniently: an older artifact's versions are still worth comparing
    if not path.is_file():
        return Check(
            "artifact",
            False,
            f"{path} not found; is {artifact_dir} a w2vlab export directory?",
            "w2vlab export --help",
            "warning",
        )
    try:
        versions = json.loads(path.read_text()).get("versions", {})
    except ValueError as e:
        return Check("artifact", False, f"{path} is not valid JSON ({e})", "w2vlab export --help", "warning")
    mismatches, pins = [], []
    for module in ("transformers", "torch"):
        exported, running = str(versions.get(module, "unknown")), _running_version(module)
        if exported.split("+")[0] != running.split("+")[0]:  # 2.13.0+cpu and 2.13.0 build the same graphs
            mismatches.append(f"{module}: exported with {exported}, running {running}")
            if module in versions:
                pins.append(f'"{module}=={exported.split("+")[0]}"')
    if mismatches:
        return Check(
            "artifact",
            False,
            f"{artifact_dir}: {'; '.join(mismatches)}",
            f"pip install {' '.join(pins)}" if pins else "w2vlab export --help",
            "warning",
        )
    return Check(
        "artifact",
        True,
        f"{artifact_dir}: exported with transformers {versions['transformers']}, "
        f"torch {versions['torch']}; same as running",
        severity="warning",
    )


def _package_check(name: str, fix: str, severity: str = "error", why: str = "") -> Callable[[], Check]:
    def check() -> Check:
        try:
            module = _import(name)
        except Exception as e:
            return Check(name, False, f"{name} not importable ({_error_line(e)}){why}", fix, severity)
        return Check(name, True, f"{name} {getattr(module, '__version__', '(version unknown)')}", severity=severity)

    return check


def check_kernel() -> Check:
    try:
        kernelspec = _import("jupyter_client.kernelspec")
        manager = kernelspec.KernelSpecManager()
        specs = manager.find_kernel_specs()
    except Exception as e:
        return Check(
            "jupyter kernel", False, f"cannot list Jupyter kernels ({_error_line(e)})", SETUP_SCRIPT, "warning"
        )
    if KERNEL_NAME not in specs:
        return Check(
            "jupyter kernel",
            False,
            f"no kernel named {KERNEL_NAME!r} (found: {', '.join(sorted(specs)) or 'none'})",
            SETUP_SCRIPT,
            "warning",
        )
    # The kernel name is per user: another checkout's setup may have pointed it at its own venv.
    runs = manager.get_kernel_spec(KERNEL_NAME).argv[0]
    if Path(runs).resolve() != Path(sys.executable).resolve():
        return Check(
            "jupyter kernel",
            False,
            f"{KERNEL_NAME!r} runs {runs}, not this environment's {sys.executable}",
            SETUP_SCRIPT,
            "warning",
        )
    return Check("jupyter kernel", True, f"{KERNEL_NAME!r} runs this environment's Python", severity="warning")


CHECKS: list[tuple[str, Callable[[], Check]]] = [
    ("python", check_python),
    ("torch", check_torch),
    ("torchscript", check_torchscript),
    ("numpy", check_numpy),
    ("transformers", check_transformers),
    ("safetensors", _package_check("safetensors", 'pip install "safetensors>=0.4"')),
    ("soundfile", _package_check("soundfile", 'pip install "soundfile>=0.12"')),
    ("soxr", _package_check("soxr", 'pip install "soxr>=0.3"')),
    (
        "librosa",
        _package_check(
            "librosa",
            'pip install "librosa>=0.10"',
            "warning",
            "; w2vlab does not need it: audio I/O uses soundfile and soxr",
        ),
    ),
    (
        "matplotlib",
        _package_check("matplotlib", 'pip install "matplotlib>=3.7"', "warning", "; the notebooks' plots need it"),
    ),
    (
        "ipywidgets",
        _package_check("ipywidgets", 'pip install "ipywidgets>=8.0"', "warning", "; the notebooks' widgets need it"),
    ),
    ("jupyter kernel", check_kernel),
]


def _isolated(name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except Exception as e:  # a check's own bug must not hide the other checks
        return Check(name, False, f"the check itself crashed ({_error_line(e)})", "please report this")


def run_checks(artifact_dir: str | Path | None = None) -> list[Check]:
    """Run every check in order; with ``artifact_dir``, also compare its exporter's versions."""
    checks = [_isolated(name, check) for name, check in CHECKS]
    if artifact_dir is not None:
        checks.append(_isolated("artifact", lambda: check_artifact(artifact_dir)))
    return checks


def is_ok(checks: list[Check]) -> bool:
    return all(c.ok or c.severity != "error" for c in checks)


def doctor(artifact_dir: str | Path | None = None) -> tuple[bool, list[Check]]:
    """Run every environment check (and the artifact's, if given): (all passed, the checks)."""
    checks = run_checks(artifact_dir)
    return is_ok(checks), checks


def _status(c: Check) -> str:
    return "OK" if c.ok else "WARN" if c.severity == "warning" else "FAIL"


def format_report(checks: list[Check]) -> str:
    """The checks as aligned text lines (status, name, detail; the fix under a failed one), then a verdict."""
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{_status(c):<4}  {c.name:<{width}}  {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
    errors = sum(_status(c) == "FAIL" for c in checks)
    warns = sum(_status(c) == "WARN" for c in checks)
    lines.append(f"{'ready' if not errors else 'NOT ready'}: {errors} error(s), {warns} warning(s)")
    return "\n".join(lines)


def to_json(checks: list[Check]) -> dict[str, Any]:
    return {"ok": is_ok(checks), "checks": [asdict(c) for c in checks]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="w2vlab doctor", description="Check that this environment can run w2vlab.")
    parser.add_argument("--artifact", metavar="DIR", help="also compare this export's torch/transformers versions")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of the table")
    args = parser.parse_args(argv)
    ok, checks = doctor(args.artifact)
    sys.stdout.write((json.dumps(to_json(checks), indent=2) if args.json else format_report(checks)) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
