"""The explorer panel in a real browser: JupyterLab on loopback, driven by headless Chromium.

Playwright for Python drives Debian's ``/usr/bin/chromium`` (``apt-get install chromium``;
``scripts/setup_notebook_env.sh`` does it when run as root).  Playwright's own browser download
(``playwright install``) is never used.  The test skips, saying why, only when there is no
``chromium`` on PATH or Playwright is not installed.

JupyterLab serves a *copy* of notebooks 03 and 06 from a temporary root laid out like the
repository (``notebooks/`` copied, ``tests`` and ``artifacts/bench`` linked, its own
``artifacts/``), so ``../tests/data`` and ``../artifacts/...`` resolve and the committed
notebooks are never autosaved.  Runtime, config, workspace and settings directories, and the
notary that trusts the copies, are throwaway too; the kernel ``w2vlab`` is the one setup
registered.  Screenshots go to ``artifacts/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from w2vlab.lab._widgets import PICKER_MAX_ROWS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVE_TIMEOUT_S = 60  # server start to /api/status answering
RUN_ALL_TIMEOUT_S = 600  # Run All: 03 takes about 40 s here, 06 (four formats, trained demo) about 60 s
REDRAW_TIMEOUT_S = 120  # one click: explore() on a few clips, the table and two figures
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# JupyterLab settings for a quiet, deterministic page: no news or update check (both would
# reach out to the internet), every cell kept in the DOM (no windowing) so all prompts are read.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}
# Console errors that are expected and harmless, by exact text.  None so far: every error fails.
BENIGN_CONSOLE_ERRORS: set[str] = set()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sync_api():
    api = pytest.importorskip(
        "playwright.sync_api",
        reason="Playwright is not installed: run ./scripts/setup_notebook_env.sh (the [browser] extra installs it)",
    )
    if shutil.which("chromium") is None:
        pytest.skip(
            "no chromium on PATH: run ./scripts/setup_notebook_env.sh as root (it runs "
            "apt-get install chromium) or install Debian's chromium package yourself"
        )
    return api


@pytest.fixture(scope="module")
def lab(tmp_path_factory, sync_api):
    """JupyterLab from the venv on a free loopback port, serving copies of notebooks 03 and 06."""
    from nbformat import read
    from nbformat.sign import NotebookNotary

    tmp = tmp_path_factory.mktemp("lab")
    site = tmp / "root"  # the repository's layout, as the notebooks' relative paths expect
    (site / "notebooks").mkdir(parents=True)
    (site / "artifacts").mkdir()
    (site / "tests").symlink_to(ROOT / "tests", target_is_directory=True)
    (site / "artifacts" / "bench").symlink_to(ROOT / "artifacts" / "bench", target_is_directory=True)
    # Trust the copies in a throwaway notary, as JupyterLab trusts a notebook its user ran or
    # trusted: an untrusted notebook shows the saved panel as its text/plain repr.
    notary = NotebookNotary(db_file=str(tmp / "nbsignatures.db"), secret_file=str(tmp / "notebook_secret"))
    for name in ("03_parity_explorer.ipynb", "06_beyond_torchscript.ipynb"):
        shutil.copy(ROOT / "notebooks" / name, site / "notebooks" / name)
        notary.sign(read(site / "notebooks" / name, as_version=4))
    for rel, settings in LAB_SETTINGS.items():
        (tmp / "settings" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "settings" / rel).write_text(json.dumps(settings))

    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
    )
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={site / 'notebooks'}",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        "--no-browser",
        f"--IdentityProvider.token={token}",
        f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
        f"--NotebookNotary.db_file={notary.db_file}",
        f"--NotebookNotary.secret_file={notary.secret_file}",
    ]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = tmp / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=tmp,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"jupyter lab did not answer in {SERVE_TIMEOUT_S} s:\n{log.read_text()}")
            time.sleep(0.25)
        yield {"base": base, "token": token, "site": site, "log": log}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(sync_api, tmp_path_factory):
    """Headless Debian Chromium with a fresh user-data-dir."""
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=shutil.which("chromium"),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            # The Debian build Playwright drives, not a download of its own.
            shown = subprocess.run([shutil.which("chromium"), "--version"], capture_output=True, text=True).stdout
            assert context.browser.version in shown, (context.browser.version, shown)
            yield context
        finally:
            context.close()


class Notebook:
    """One notebook open in its own JupyterLab workspace, with every console message kept."""

    def __init__(self, browser, lab, name: str):
        self.name, self.messages = name, []
        self.page = browser.new_page()
        self.page.on("console", lambda m: self.messages.append((m.type, m.text)))
        self.page.on("pageerror", lambda e: self.messages.append(("pageerror", str(e))))
        stem = name.split("_")[0]
        self.page.goto(f"{lab['base']}/lab/workspaces/w{stem}/tree/{name}?token={lab['token']}")
        self.page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
        self.wait_idle(60)

    def wait_idle(self, timeout_s: float) -> None:
        self.page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=timeout_s * 1000)

    def check_saved_panel(self, lab) -> None:
        """Before any cell runs, the panel draws from the notebook's saved widget state (the
        notebook is trusted), with the report it was saved with."""
        saved = json.loads((lab["site"] / "notebooks" / self.name).read_text())["metadata"]["widgets"][WIDGET_STATE]
        heads = [
            s["state"]["outputs"][0]["data"]["text/markdown"].splitlines()[0].replace("**", "")
            for s in saved["state"].values()
            if s["model_name"] == "OutputModel" and s["state"]["outputs"]
        ]
        panel = self.panel("panel = explorer_panel(bench)")
        assert panel.locator(".widget-toggle-buttons").count() >= 1 and _shown(panel)[0] in heads, (
            _shown(panel)[0],
            heads,
        )
        self.screenshot(panel, f"{self.name.split('_')[0]}_saved_state.png")

    def run_all(self) -> float:
        """Run > Run All Cells, then wait until no cell is queued or running and the kernel is idle."""
        start = time.monotonic()
        self.page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        self.page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
        prompts = ".jp-CodeCell .jp-InputArea-prompt"
        self.page.wait_for_function(
            f"""() => [...document.querySelectorAll('{prompts}')]
            .some(p => p.textContent.includes('*'))""",
            timeout=30_000,
        )
        self.page.wait_for_function(
            f"""() => ![...document.querySelectorAll('{prompts}')]
            .some(p => p.textContent.includes('*'))
            && document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'""",
            timeout=RUN_ALL_TIMEOUT_S * 1000,
        )
        seconds = time.monotonic() - start
        texts = self.page.locator(prompts).all_inner_texts()
        not_run = [i for i, t in enumerate(texts) if not re.fullmatch(r"\[\d+\]:", t.strip())]
        errors = self.page.locator(".jp-OutputArea-output", has_text="Traceback").all_inner_texts()
        assert not not_run and not errors, f"{self.name}: code cells {not_run} did not run; errors: {errors[:1]}"
        return seconds

    def run_to_panel(self, lab):
        """The saved panel first, then Run All; the live panel, checked for drawing and console errors."""
        self.check_saved_panel(lab)
        seconds = self.run_all()
        print(f"{self.name.split('_')[0]}: Run All took {seconds:.0f} s")
        panel = self.panel("panel = explorer_panel(bench)")
        self.check_page()
        return panel

    def panel(self, source: str):
        """The panel displayed by the cell whose source contains ``source``."""
        cell = self.page.locator(".jp-CodeCell").filter(has_text=source).first
        panel = cell.locator(".jp-Cell-outputArea .widget-vbox").first
        panel.wait_for(timeout=30_000)
        return panel

    def screenshot(self, panel, name: str) -> Path:
        """The viewport, scrolled so the panel's top is at the top."""
        panel.evaluate("e => e.scrollIntoView({block: 'start'})")
        self.page.wait_for_timeout(300)  # let the figures settle after the scroll
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / name
        self.page.screenshot(path=str(path))
        return path

    def check_page(self) -> None:
        """Every widget drew as controls, and the console holds no error."""
        page = self.page
        assert page.get_by_text("Error displaying widget").count() == 0
        plain = page.locator('.jp-OutputArea-output[data-mime-type="text/plain"]').all_inner_texts()
        assert not [t for t in plain if t.startswith(("VBox(", "HBox("))], "a widget was shown as its repr"
        errors = [m for m in self.messages if m[0] in ("error", "pageerror") and m[1] not in BENIGN_CONSOLE_ERRORS]
        assert not errors, f"{self.name}: browser console errors: {errors}"

    def close(self) -> None:
        print(f"{self.name} console:", *[f"  {t}: {m}" for t, m in self.messages], sep="\n")
        self.page.close()


def _shown(panel) -> tuple[str, str]:
    """The output area's headline and table, as the page shows them."""
    md = panel.locator(".widget-output .jp-RenderedMarkdown:not([data-stale])").first
    return md.locator("p").first.inner_text(timeout=1000), md.locator("table").first.inner_text(timeout=1000)


def _click(panel, target, headline: str, clicks: list, same_numbers: bool = False) -> tuple[str, str]:
    """Click ``target``, wait until the output area is redrawn (a new table, not the one marked
    stale before the click) with ``headline`` (a prefix) and both figures, and record what the page
    showed before and after.  The table's numbers must change too, unless ``same_numbers``."""
    from playwright.sync_api import Error as PlaywrightError

    before = _shown(panel)
    panel.locator(".widget-output .jp-RenderedMarkdown").first.evaluate("e => { e.dataset.stale = '1'; }")
    target.click()
    out = panel.locator(".widget-output")
    deadline = time.monotonic() + REDRAW_TIMEOUT_S
    while True:
        try:
            after = _shown(panel)
            if after[0].startswith(headline) and out.locator("img").count() == 2:
                break
        except PlaywrightError:  # cleared before it is redrawn: nothing to read for a moment
            pass
        assert time.monotonic() < deadline, f"no redraw to {headline!r}; shows {out.inner_text()[:300]!r}"
        time.sleep(0.2)
    assert (after[1] == before[1]) is same_numbers, f"{headline!r}: table before\n{before[1]}\nafter\n{after[1]}"
    clicks.append((target.inner_text() or target.get_attribute("type"), before, after))
    return after


def _report(name: str, clicks: list) -> None:
    for control, (head0, table0), (head1, table1) in clicks:
        print(f"{name}: clicked {control!r}\n  before: {head0}\n  after:  {head1}")
        print("  table before:", *table0.splitlines()[1:], "table after:", *table1.splitlines()[1:], sep="\n    ")


def _left(locator) -> float:
    return locator.bounding_box()["x"]


def test_explorer_panel_03(browser, lab):
    nb = Notebook(browser, lab, "03_parity_explorer.ipynb")
    try:
        panel = nb.run_to_panel(lab)
        toggles = panel.locator(".widget-toggle-buttons")
        box = panel.locator(".widget-checkbox input")
        select = panel.locator(".widget-select-multiple select")
        assert toggles.count() == 1, "one format only: a plain line, not a one-button toggle"
        assert panel.locator(".widget-html").inner_text().split() == ["format", "torchscript"]
        size, options = select.evaluate("s => [s.size, s.options.length]")
        assert size == options <= PICKER_MAX_ROWS, "every clip in view without scrolling"
        # One label column: every control's field starts at the same x.
        lefts = [
            _left(toggles.locator("button").first),
            _left(panel.locator(".widget-html-content")),
            _left(box),
            _left(select),
        ]
        assert max(lefts) - min(lefts) <= 4, f"controls start at x = {lefts}"
        head, _ = _shown(panel)
        assert head.startswith("waveform (padded batch): PASS (4 clips")  # where the notebook leaves it
        nb.screenshot(panel, "03_after_run_all.png")

        clicks: list = []
        mode = {t: toggles.locator("button", has_text=t) for t in ("preprocessed", "waveform", "naive trace")}
        _click(panel, mode["preprocessed"], "preprocessed (padded batch): PASS (4 clips", clicks)
        # Batch off: one clip at a time.  Preprocessed mode runs eager's kernels on the same features,
        # bit-identical alone or batched, so the redrawn table holds the same zeros.
        _, table = _click(panel, box, "preprocessed: PASS (4 clips", clicks, same_numbers=True)
        assert table.count("0.00e+00") == 16, table  # 1 - cos, L2, max|diff| and max|diff|/max|ref| of 4 clips
        _, table = _click(panel, mode["naive trace"], "naive trace (why not): FAIL (4 clips", clicks)
        assert table.count("FAIL") == 4 and box.is_disabled(), "naive: every clip fails, no batch"
        nb.screenshot(panel, "03_naive.png")
        _click(panel, mode["waveform"], "waveform: PASS (4 clips", clicks)
        assert not box.is_disabled()
        nb.check_page()
        _report("03", clicks)
    finally:
        nb.close()


def test_format_toggle_06(browser, lab):
    nb = Notebook(browser, lab, "06_beyond_torchscript.ipynb")
    try:
        panel = nb.run_to_panel(lab)
        mode, fmt = panel.locator(".widget-toggle-buttons").nth(0), panel.locator(".widget-toggle-buttons").nth(1)
        box = panel.locator(".widget-checkbox input")
        assert fmt.locator("button").all_inner_texts() == ["torchscript", "exported", "onnx", "onnx-int8", "openvino"]
        head, _ = _shown(panel)  # the notebook's last cell leaves the panel on the int8 copy
        assert head == (
            "preprocessed onnx-int8 (padded batch): PASS (3 clips; bounds: cosine >= 0.999 "
            "(>= 0.998 under 8000 samples), max|diff|/max|ref| <= 3.0e-01)"
        ), head

        clicks: list = []
        button = lambda group, text: group.locator("button", has_text=re.compile(f"^{re.escape(text)}$"))  # noqa: E731
        head, _ = _click(panel, button(fmt, "torchscript"), "preprocessed (padded batch): PASS", clicks)
        assert head.endswith("bounds: cosine >= 0.99999, max|diff|/max|ref| <= 3.0e-05)"), head
        assert mode.locator("button").all_inner_texts() == ["preprocessed", "naive trace (why not)"]  # 06's MODES
        head, _ = _click(panel, button(fmt, "onnx"), "preprocessed onnx (padded batch): PASS", clicks)
        assert head.endswith("bounds: cosine >= 0.99999, max|diff|/max|ref| <= 3.0e-05)"), head
        head, _ = _click(panel, button(fmt, "openvino"), "preprocessed openvino (padded batch): PASS", clicks)
        assert head.endswith("bounds: cosine >= 0.99999, max|diff|/max|ref| <= 3.0e-05)"), head
        head, _ = _click(panel, button(fmt, "onnx-int8"), "preprocessed onnx-int8 (padded batch): PASS", clicks)
        assert head.endswith("bounds: cosine >= 0.999 (>= 0.998 under 8000 samples), max|diff|/max|ref| <= 3.0e-01)"), (
            head
        )
        nb.screenshot(panel, "06_int8.png")
        _click(panel, button(mode, "naive trace (why not)"), "naive trace (why not): FAIL", clicks)
        assert box.is_disabled() and all(b.is_disabled() for b in fmt.locator("button").all())
        nb.check_page()
        _report("06", clicks)
    finally:
        nb.close()
