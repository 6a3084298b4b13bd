"""The doctor: every check runs in this venv, and simulated breakages fail the right way."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import transformers

from w2vlab.lab import _envcheck as envcheck

NAMES = [
    "python",
    "torch",
    "torchscript",
    "numpy",
    "transformers",
    "safetensors",
    "soundfile",
    "soxr",
    "librosa",
    "matplotlib",
    "ipywidgets",
    "jupyter kernel",
]


def by_name(checks: list[envcheck.Check]) -> dict[str, envcheck.Check]:
    return {c.name: c for c in checks}


def test_all_checks_pass_in_this_venv():
    ok, checks = envcheck.doctor()
    assert [c.name for c in checks] == NAMES
    assert all(c.detail for c in checks)
    assert ok, envcheck.format_report(checks)


def numpy_not_available(_):  # what torch < 2.3 raises under NumPy 2
    raise RuntimeError("Numpy is not available")


def test_numpy_not_available_is_an_error(monkeypatch):
    monkeypatch.setattr(torch, "from_numpy", numpy_not_available)
    ok, checks = envcheck.doctor()
    numpy = by_name(checks)["numpy"]
    assert not numpy.ok and numpy.severity == "error"
    assert "Numpy is not available" in numpy.detail and "numpy<2" in numpy.fix
    assert not ok
    assert "FAIL" in envcheck.format_report(checks)


def test_disabled_torchscript_is_an_error(monkeypatch):
    def disabled(_):
        raise RuntimeError("TorchScript was compiled out")

    monkeypatch.setattr(torch.jit, "script", disabled)
    check = envcheck.check_torchscript()
    assert not check.ok and "disabled" in check.detail and check.fix == "pip install torch==2.13.0"


def test_unimportable_torch_fails_its_checks_without_crashing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    checks = by_name(envcheck.run_checks())
    assert not checks["torch"].ok and not checks["torchscript"].ok and checks["torch"].fix
    assert not checks["numpy"].ok and checks["numpy"].severity == "warning"
    assert checks["soxr"].ok


def test_missing_librosa_is_only_a_warning(monkeypatch):
    monkeypatch.setitem(sys.modules, "librosa", None)
    ok, checks = envcheck.doctor()
    librosa = by_name(checks)["librosa"]
    assert not librosa.ok and librosa.severity == "warning" and "soundfile" in librosa.detail
    assert ok


def test_crashing_check_does_not_stop_the_others(monkeypatch):
    def crash() -> envcheck.Check:
        raise AttributeError("half-installed")

    monkeypatch.setattr(envcheck, "CHECKS", [("boom", crash), *envcheck.CHECKS])
    checks = envcheck.run_checks()
    assert checks[0].name == "boom" and not checks[0].ok and "half-installed" in checks[0].detail
    assert [c.name for c in checks[1:]] == NAMES


@pytest.mark.parametrize(
    "version, ok, severity", [((3, 14, 0), False, "warning"), ((3, 9, 18), False, "error"), ((3, 13, 1), True, "error")]
)
def test_python_version_bounds(monkeypatch, version, ok, severity):
    monkeypatch.setattr(envcheck, "_python_version", lambda: version)
    check = envcheck.check_python()
    assert (check.ok, check.severity) == (ok, severity)
    if version[:2] == (3, 14):
        assert "soxr" in check.detail and "soundfile" in check.detail


def test_artifact_version_mismatch_is_a_warning_naming_both(tmp_path):
    versions = {"transformers": "4.0.0", "torch": torch.__version__}
    (tmp_path / "metadata.json").write_text(json.dumps({"versions": versions}))
    ok, checks = envcheck.doctor(tmp_path)
    artifact = checks[-1]
    assert artifact.name == "artifact" and not artifact.ok and artifact.severity == "warning"
    assert "4.0.0" in artifact.detail and transformers.__version__ in artifact.detail
    assert "torch" not in artifact.detail.split(";")[0] and "transformers==4.0.0" in artifact.fix
    assert ok


def test_artifact_with_matching_versions_is_ok(tmp_path):
    versions = {"transformers": transformers.__version__, "torch": torch.__version__}
    (tmp_path / "metadata.json").write_text(json.dumps({"versions": versions}))
    assert envcheck.check_artifact(tmp_path).ok
    assert envcheck.check_artifact(tmp_path / "nowhere").severity == "warning"


def test_main_json_and_exit_code(monkeypatch, capsys):
    assert envcheck.main(["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and [c["name"] for c in report["checks"]] == NAMES

    monkeypatch.setattr(torch, "from_numpy", numpy_not_available)
    assert envcheck.main([]) == 1
    assert 'fix: pip install "numpy<2"' in capsys.readouterr().out


def test_optional_checks_are_warnings_even_when_they_pass():
    checks = by_name(envcheck.run_checks())
    assert {n for n, c in checks.items() if c.severity == "warning"} == {
        "librosa",
        "matplotlib",
        "ipywidgets",
        "jupyter kernel",
    }


def test_kernel_of_another_environment_is_flagged(monkeypatch):
    """Another checkout's setup can re-point the per-user kernel name at its own venv."""
    from w2vlab.lab import _envcheck as envcheck

    if not envcheck.check_kernel().ok:
        pytest.skip("no w2vlab kernel registered for this environment")
    monkeypatch.setattr(sys, "executable", "/elsewhere/venv/bin/python")
    check = envcheck.check_kernel()
    assert not check.ok and check.severity == "warning"
    assert "not this environment's /elsewhere/venv/bin/python" in check.detail
    assert "setup_notebook_env.sh" in check.fix
