#!/usr/bin/env python
"""Run notebooks top to bottom and save their widget state in them, in place.

A notebook saved this way carries ``metadata.widgets`` (the state of every widget model the run
created) beside the outputs that display them, so JupyterLab draws the explorer panel as soon as
the notebook opens, before any cell runs, and GitHub / nbviewer show its last report instead of
a ``VBox(...)`` repr.  Each notebook runs with ``nbclient.NotebookClient(...,
store_widget_state=True)`` in kernel ``w2vlab``, with the notebook's own folder as working
directory (as in JupyterLab, so ``../artifacts`` and ``../tests/data`` resolve).

``--widgets-only`` keeps the rest of the committed notebook as it is: only ``metadata.widgets``
and the outputs of the cells that display a widget (matched by cell id) are replaced.

Usage::

    .venv_w2vbert_notebook/bin/python scripts/save_widget_state.py notebooks/03_parity_explorer.ipynb
    .venv_w2vbert_notebook/bin/python scripts/save_widget_state.py --widgets-only notebooks/06_beyond_torchscript.ipynb
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def widget_cells(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """The code cells whose outputs display a widget, by cell id."""
    return {
        cell.id: cell
        for cell in nb.cells
        if cell.cell_type == "code" and any(WIDGET_VIEW in out.get("data", {}) for out in cell.outputs)
    }


def save_widget_state(path: Path, kernel: str = "w2vlab", timeout: int = 600, widgets_only: bool = False) -> int:
    """Execute ``path`` and write it back with its widget state; returns the number of saved models."""
    ran = nbformat.read(path, as_version=4)
    os.environ.setdefault("MPLBACKEND", "Agg")  # as scripts/run_tests.sh: no GUI backend in the kernel
    client = NotebookClient(
        ran,
        kernel_name=kernel,
        timeout=timeout,
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
    )  # cwd: the notebook's folder
    client.execute()
    state = ran.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    shown = widget_cells(ran)
    if not shown or not state:
        raise SystemExit(f"{path}: no cell displayed a widget, so there is no widget state to save")
    if widgets_only:
        committed = nbformat.read(path, as_version=4)  # read now: keep any edit made while it ran
        for cell in committed.cells:
            if cell.get("id") in shown:
                cell.outputs = shown[cell.id].outputs
                cell.execution_count = shown[cell.id].execution_count
        committed.metadata.widgets = ran.metadata.widgets
        ran = committed
    nbformat.write(ran, path)
    return len(state)


def get_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help=".ipynb files, rewritten in place")
    parser.add_argument("--kernel", default="w2vlab", help="kernel name (default: w2vlab)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default: 600)")
    parser.add_argument(
        "--widgets-only",
        action="store_true",
        help="replace only metadata.widgets and the outputs of cells that display a widget",
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = get_args(argv)
    for path in args.notebooks:
        n = save_widget_state(path.resolve(), args.kernel, args.timeout, args.widgets_only)
        print(f"{path}: saved the state of {n} widget models")


if __name__ == "__main__":
    main()
