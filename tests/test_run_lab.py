"""scripts/run_lab.sh: a real JupyterLab on loopback, serving notebooks/ with the w2vlab kernel."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts a JupyterLab server

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_lab.sh"
BANNER = "w2vlab: starting JupyterLab"
SETUP_TIMEOUT_S = 300  # run_lab.sh runs setup first; a stale venv is reinstalled (about 90 s)
SERVE_TIMEOUT_S = 60  # from the banner to /api/status answering


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, dict]:
    assert url.startswith("http://127.0.0.1:")  # loopback only
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, json.loads(r.read().decode())


def _wait_for(predicate, deadline: float, proc: subprocess.Popen, log: Path, what: str):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"run_lab.sh exited with {proc.returncode} before {what}:\n{log.read_text()}")
        result = predicate()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()}")


def test_run_lab_serves_notebooks_with_w2vlab_kernel(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "lab.log"
    # Keep JupyterLab off the user's runtime, config, workspace and settings directories.  The data
    # path is left alone: the w2vlab kernel is registered there (--user) by the setup script.
    env = dict(
        os.environ,
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
    )
    cmd = [
        str(SCRIPT),
        "--port",
        str(port),
        f"--IdentityProvider.token={token}",
        f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
        "--ServerApp.port_retries=0",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_for(
            lambda: BANNER in log.read_text(),
            time.monotonic() + SETUP_TIMEOUT_S,
            proc,
            log,
            "the setup step and the banner",
        )

        def status():
            try:
                return _get(f"{base}/api/status?token={token}")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return None

        code, _ = _wait_for(status, time.monotonic() + SERVE_TIMEOUT_S, proc, log, "/api/status")
        assert code == 200
        text = log.read_text()
        assert f"http://127.0.0.1:{port}/lab" in text  # the user is told where to go
        if os.geteuid() == 0:  # root: the server is up, so --allow-root was passed
            assert "Running as root is not recommended" not in text

        code, specs = _get(f"{base}/api/kernelspecs?token={token}")
        assert code == 200 and "w2vlab" in specs["kernelspecs"], sorted(specs["kernelspecs"])

        code, root = _get(f"{base}/api/contents/?token={token}")
        names = {item["name"] for item in root["content"]}
        assert code == 200 and {"03_parity_explorer.ipynb", "00_environment_check.ipynb"} <= names, names

        # Bound to loopback with a token: no token, no contents.
        try:
            code = urllib.request.urlopen(f"{base}/api/contents/", timeout=5).status
        except urllib.error.HTTPError as e:
            code = e.code
        assert code == 403

        # Signed, so JupyterLab draws the saved widget state of 03 and 06 before any cell runs.
        import nbformat
        from nbformat.sign import NotebookNotary

        notary = NotebookNotary()  # the user's signature store, which run_lab.sh signs into
        for name in ("03_parity_explorer.ipynb", "06_beyond_torchscript.ipynb"):
            assert notary.check_signature(nbformat.read(ROOT / "notebooks" / name, as_version=4)), name

        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) is not None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
