"""``w2vlab report``: the export notebooks run on one checkpoint, kept as the export's audit trail.

Notebooks 01, 02, 04 and 05 each have one code cell tagged ``parameters`` (papermill's
convention): ``model_path``, ``checkpoint``, ``config``, ``output_dir`` and ``clips``.
:func:`write_report` runs each with papermill in the ``w2vlab`` kernel, with the notebooks' folder as
working directory (so the notebooks' relative paths hold) and
``output_dir`` inside the report, renders every executed notebook to HTML (figures embedded) and
writes ``index.html``, one row per notebook with its status, time and links, plus ``report.json``.

A notebook that fails is still saved (papermill writes the partially executed notebook before it
raises), rendered and listed: **FAIL** when an ``assert`` or the export's parity failed, **ERROR**
for anything else (a config that contradicts the weights, a missing file, a dead kernel).

The notebooks' folder is the checkout's ``notebooks/`` when there is one (what JupyterLab shows);
an installed w2vlab runs the copies its wheel carries (``w2vlab/lab/_bundle/``: the notebooks, the
audio fixtures they read as ``../tests/data`` and the benchmark summary notebook 06 reads, copied by
setup.py's build step).

papermill and nbconvert come with the ``[report]`` extra; they are imported only when a report runs.
"""

from __future__ import annotations

import html
import json
import logging
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from w2vlab._contract import InputError, require
from w2vlab._version import __version__

logger = logging.getLogger(__name__)

CHECKOUT_NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"  # the source checkout's
PACKAGED_NOTEBOOKS_DIR = Path(__file__).resolve().parent / "_bundle" / "notebooks"  # an installed wheel's copies
NOTEBOOKS = {  # key -> notebook (without .ipynb): the ones with a `parameters` cell, in run order
    "01": "01_export_preprocessed",
    "02": "02_export_waveform",
    "04": "04_consumer_runtime",
    "05": "05_pruned_students",
    "06": "06_beyond_torchscript",  # every format (needs the [onnx] extra); not in the default sets
}
DENSE_NOTEBOOKS = ("01", "02", "04")  # export (both modes, clips in the parity suites), then consume
PRUNED_NOTEBOOKS = ("01", "02", "04", "05")  # the same, plus 05's per-layer checks against the weights
KERNEL = "w2vlab"
INDEX_FILE = "index.html"
SUMMARY_FILE = "report.json"
OUTPUTS_DIR = "outputs"  # each notebook's output_dir is outputs/<notebook>/
REPORT_FORMAT = "w2vlab-report/1"
FAIL_ERRORS = ("AssertionError", "ExportParityError")  # a check failed: FAIL; any other exception: ERROR
REPORT_PACKAGES = ("papermill", "nbconvert")
REPORT_HINT = (
    "pip install 'w2vlab[report]' (in a checkout: pip install -e '.[report]'; scripts/setup_notebook_env.sh does)"
)
KERNEL_HINT = "scripts/setup_notebook_env.sh registers it; or: python -m ipykernel install --user --name w2vlab"


def default_notebooks_dir() -> Path:
    """The checkout's ``notebooks/`` when this w2vlab runs from one, else the copies inside the package."""
    return (
        CHECKOUT_NOTEBOOKS_DIR
        if (CHECKOUT_NOTEBOOKS_DIR / f"{NOTEBOOKS['01']}.ipynb").is_file()
        else PACKAGED_NOTEBOOKS_DIR
    )


NOTEBOOKS_DIR = default_notebooks_dir()


@dataclass
class NotebookResult:
    """One executed notebook: status ``PASS`` / ``FAIL`` / ``ERROR``, wall time, files written."""

    name: str
    status: str
    seconds: float
    notebook: Path  # the executed .ipynb (up to the failing cell when it failed)
    html: Path | None  # its HTML rendering; None if nothing could be saved
    output_dir: Path  # the notebook's output_dir parameter
    error: str = ""  # "In [n]: <exception>: <first line of its message>"

    def line(self) -> str:
        return f"{self.status:<5} {self.name}  {self.seconds:.1f} s" + (f"  {self.error}" if self.error else "")

    def to_dict(self, root: Path) -> dict[str, Any]:
        rel = lambda p: None if p is None else str(p.relative_to(root))  # noqa: E731
        return {
            "name": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 2),
            "error": self.error,
            "notebook": rel(self.notebook),
            "html": rel(self.html),
            "output_dir": rel(self.output_dir),
        }


@dataclass
class Report:
    output: Path
    parameters: dict[str, str | None]
    results: list[NotebookResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.status == "PASS" for r in self.results)

    @property
    def index(self) -> Path:
        return self.output / INDEX_FILE


# --------------------------------------------------------------------------- choosing notebooks


def default_notebooks(model_path: str | Path, config: str | Path | None = None) -> tuple[str, ...]:
    """01, 02, 04 for a dense model; 05 too when the config (config.json + override) is pruned."""
    from w2vlab.model._checkpoint import read_json
    from w2vlab.model._config import is_pruned, merge_config

    model_path = Path(model_path)
    base = read_json(model_path / "config.json") if (model_path / "config.json").is_file() else {}
    return PRUNED_NOTEBOOKS if is_pruned(merge_config(base, read_json(config) if config else {})) else DENSE_NOTEBOOKS


def parse_notebooks(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"01,05"`` (keys or full names, any order) -> ``("01", "05")`` in run order."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    keys = set()
    for item in items:
        key = item.removesuffix(".ipynb")[:2]
        if key not in NOTEBOOKS or item.removesuffix(".ipynb") not in (key, NOTEBOOKS[key]):
            raise InputError(
                f"unknown report notebook {item!r}; expected some of {', '.join(NOTEBOOKS)} "
                f"(the notebooks with a parameters cell: {', '.join(NOTEBOOKS.values())})"
            )
        keys.add(key)
    if not keys:
        raise InputError(f"no notebooks given; expected a comma-separated list of {', '.join(NOTEBOOKS)}")
    return tuple(k for k in NOTEBOOKS if k in keys)


# --------------------------------------------------------------------------- running one notebook


def _first_line(text: Any, limit: int = 300) -> str:
    """The message's first line; a first line ending in ':' ("does not match the model:") takes the next two along."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = " ".join(lines[:3]) if lines and lines[0].endswith(":") else (lines[0] if lines else "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def run_notebook(
    source: Path,
    executed: Path,
    parameters: dict[str, Any],
    *,
    kernel: str = KERNEL,
    cwd: Path = NOTEBOOKS_DIR,
    timeout: float | None = None,
) -> tuple[str, str]:
    """Execute ``source`` into ``executed`` with papermill: (status, error line).

    The executed notebook is written even when a cell raises (papermill saves it, with an error
    marker on top, before raising); that is what makes a failed run auditable.
    """
    require(*REPORT_PACKAGES, needed_by="w2vlab report", hint=REPORT_HINT)
    import papermill

    try:
        papermill.execute_notebook(
            source,
            executed,
            parameters=parameters,
            kernel_name=kernel,
            cwd=cwd,
            progress_bar=False,
            **({"execution_timeout": timeout} if timeout else {}),
        )
    except papermill.PapermillExecutionError as e:
        status = "FAIL" if e.ename in FAIL_ERRORS else "ERROR"
        return status, f"In [{e.exec_count}]: {e.ename}: {_first_line(e.evalue)}".rstrip(": ")
    except Exception as e:  # a dead kernel, a cell timeout: recorded as ERROR, the next notebook still runs
        logger.warning("%s did not finish", source.name, exc_info=True)
        return "ERROR", f"{type(e).__name__}: {_first_line(e)}".rstrip(": ")
    return "PASS", ""


def render_html(notebook: Path) -> Path:
    """``notebook`` rendered next to it as ``.html`` (nbconvert's HTMLExporter; figures embedded as data URIs)."""
    require(*REPORT_PACKAGES, needed_by="w2vlab report", hint=REPORT_HINT)
    import nbformat
    from nbconvert import HTMLExporter

    quiet = logging.getLogger(f"{__name__}.nbconvert")  # its one warning here: figures have no alt text
    quiet.setLevel(logging.ERROR)
    body, _ = HTMLExporter(embed_images=True, log=quiet).from_notebook_node(nbformat.read(notebook, as_version=4))
    out = notebook.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


# --------------------------------------------------------------------------- the whole report


def _check_inputs(
    model_path: Path, checkpoint: Path | None, config: Path | None, audio: Path | None, notebooks_dir: Path, kernel: str
) -> None:
    """Everything that can be wrong before a kernel starts, each with what to do."""
    missing = [
        f"{name} {path}"
        for name, path in (("model path", model_path), ("checkpoint", checkpoint), ("config", config))
        if path is not None and not path.exists()
    ]
    if missing:
        raise FileNotFoundError(f"not found: {'; '.join(missing)}")
    if audio is not None:
        from w2vlab.export._suite import audio_files

        if not audio_files(audio):  # raises NotADirectoryError for a missing directory
            raise InputError(f"--audio {audio} holds no .wav/.flac files (only files directly inside are read)")
    if not notebooks_dir.is_dir():
        raise FileNotFoundError(
            f"notebooks folder not found: {notebooks_dir}; expected the checkout's notebooks/ or the copies "
            f"an installed wheel carries ({PACKAGED_NOTEBOOKS_DIR})"
        )
    require(*REPORT_PACKAGES, needed_by="w2vlab report", hint=REPORT_HINT)
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel as e:
        raise InputError(f"no Jupyter kernel named {kernel!r}; {KERNEL_HINT}") from e


def write_report(
    model_path: str | Path,
    output: str | Path,
    *,
    checkpoint: str | Path | None = None,
    config: str | Path | None = None,
    audio: str | Path | None = None,
    notebooks: str | Sequence[str] | None = None,
    force: bool = False,
    kernel: str = KERNEL,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
    timeout: float | None = None,
) -> Report:
    """Run the parameterised notebooks on a checkpoint and write the report into ``output``.

    Args:
        model_path, checkpoint, config: as for :func:`w2vlab.export._pipeline.export` (``config``: a JSON path).
        audio: directory of audio files for the notebooks' parity suites (default: their own
            fixtures, ``tests/data``).
        notebooks: keys such as ``"01,05"`` (default: :func:`default_notebooks`).
        force: write into an existing, non-empty ``output`` (files of the same name are replaced).
        timeout: seconds per cell (default: none).

    Returns the :class:`Report`; a notebook that failed is in it as FAIL / ERROR, not raised.
    Raises (before any notebook runs) ``FileNotFoundError``, ``FileExistsError``, ``ImportError``,
    ``ValueError`` for unusable inputs.
    """
    start = time.perf_counter()
    model_path, output, notebooks_dir = (
        Path(model_path).resolve(),
        Path(output).resolve(),
        Path(notebooks_dir).resolve(),
    )
    checkpoint, config, audio = (None if p is None else Path(p).resolve() for p in (checkpoint, config, audio))
    _check_inputs(model_path, checkpoint, config, audio, notebooks_dir, kernel)
    keys = parse_notebooks(notebooks) if notebooks is not None else default_notebooks(model_path, config)
    if output.exists() and any(output.iterdir()) and not force:
        raise FileExistsError(
            f"{output} already exists and is not empty; pass --force (force=True) to write the report into it"
        )
    output.mkdir(parents=True, exist_ok=True)

    given = {"model_path": model_path, "checkpoint": checkpoint, "config": config, "clips": audio}
    report = Report(output, {k: None if v is None else str(v) for k, v in given.items()})
    started = datetime.now(timezone.utc)
    for n, key in enumerate(keys, 1):
        name = NOTEBOOKS[key]
        out_dir = output / OUTPUTS_DIR / name
        executed = output / f"{name}.ipynb"
        logger.info("[%d/%d] %s: running", n, len(keys), name)
        t0 = time.perf_counter()
        status, error = run_notebook(
            notebooks_dir / f"{name}.ipynb",
            executed,
            {**report.parameters, "output_dir": str(out_dir)},
            kernel=kernel,
            cwd=notebooks_dir,
            timeout=timeout,
        )
        seconds = time.perf_counter() - t0
        page = render_html(executed) if executed.is_file() else None
        result = NotebookResult(name, status, seconds, executed, page, out_dir, error)
        report.results.append(result)
        logger.info("[%d/%d] %s", n, len(keys), result.line())
        _write_summary(report, started, time.perf_counter() - start)  # after every notebook: readable if interrupted
    report.seconds = time.perf_counter() - start
    _write_summary(report, started, report.seconds)
    logger.info("report %s: %s", "PASS" if report.passed else "FAIL", report.index)
    return report


# --------------------------------------------------------------------------- index.html and report.json


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {
        "w2vlab": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def _write_summary(report: Report, started: datetime, seconds: float) -> None:
    versions = _versions()
    summary = {
        "format": REPORT_FORMAT,
        "passed": report.passed,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "parameters": report.parameters,
        "versions": versions,
        "notebooks": [r.to_dict(report.output) for r in report.results],
    }
    (report.output / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    report.index.write_text(render_index(summary), encoding="utf-8")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 75em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.35em 0.7em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.PASS { background: #d9f2d9; } .FAIL { background: #f9d6d5; } .ERROR { background: #fbe3c8; }
code { font-size: 0.92em; }
"""


def render_index(summary: dict[str, Any]) -> str:
    """``index.html`` from the report summary: parameters, versions, one row per notebook."""
    e = html.escape
    verdict = "PASS" if summary["passed"] else "FAIL"
    params = "".join(
        f"<tr><th>{e(k)}</th><td>{f'<code>{e(v)}</code>' if v is not None else 'not given (the default)'}</td></tr>"
        for k, v in summary["parameters"].items()
    )
    versions = ", ".join(f"{e(k)} {e(v)}" for k, v in summary["versions"].items())
    rows = []
    for r in summary["notebooks"]:
        page = f'<a href="{e(r["html"])}">{e(r["name"])}</a>' if r["html"] else e(r["name"])
        rows.append(
            f'<tr class="{e(r["status"])}"><td>{page}</td><td><b>{e(r["status"])}</b></td>'
            f'<td class="num">{r["seconds"]:.1f} s</td><td><code>{e(r["error"])}</code></td>'
            f'<td><a href="{e(r["notebook"])}">.ipynb</a></td><td><a href="{e(r["output_dir"])}/">outputs</a></td></tr>'
        )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>w2vlab report: {verdict}</title><style>{_STYLE}</style></head><body>\n"
        f'<h1>w2vlab report: <span class="{verdict}">{verdict}</span></h1>\n'
        f"<p>Started {e(summary['started'])}, {summary['seconds']:.1f} s in all; {versions}.</p>\n"
        f"<table>{params}</table>\n"
        "<table><tr><th>notebook</th><th>status</th><th>time</th><th>error</th><th>executed</th><th>files</th></tr>\n"
        + "\n".join(rows)
        + "\n</table>\n<p>PASS: every cell ran and every assertion held. FAIL: an assertion or the export's parity "
        "failed. ERROR: another exception (for example a config that contradicts the weights). A failed notebook "
        "is saved up to the failing cell.</p>\n</body></html>\n"
    )
