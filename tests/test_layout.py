"""The package's shape, read from its source: layers follow the folders, imports flow one way,
and functions stay short.

A module's layer is its folder: ``w2vlab/runtime/_loaders.py`` is in ``runtime``; the modules at
the top (``_contract``, ``_audio``, ``_features``, ``_parity``, ...) are the ``leaves``; ``cli``,
``__init__`` and ``__main__`` are the ``app``.  A new module inherits its folder's rule, so it
cannot cross a line by accident.  Every ``import`` of a w2vlab module counts, at the top of a file
or inside a function (a lazy import that crosses a line, or closes a cycle, still does).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "w2vlab"
APP = {"cli", "__init__", "__main__"}
# layer -> the layers its modules may import (their own included).  The rules that matter: the
# runtime (the consumer) imports neither the model nor the exporter; the exporter never imports
# the lab; nothing imports the benchmark.
ALLOWED = {
    "leaves": {"leaves"},
    "runtime": {"leaves", "runtime"},
    "model": {"leaves", "runtime", "model"},
    "corpus": {"leaves", "runtime", "corpus"},
    "export": {"leaves", "runtime", "model", "corpus", "export"},  # corpus: the int8 decision gate scores trials
    "lab": {"leaves", "runtime", "model", "export", "corpus", "lab"},
    "bench": {"leaves", "runtime", "model", "export", "corpus", "lab", "bench"},
    "app": {"leaves", "runtime", "model", "export", "corpus", "lab", "app"},
}
SUBPACKAGES = set(ALLOWED) - {"leaves", "app"}
# What the consumer may reach, beyond the rule: what it needs to embed audio, and no more.
CONSUMER = ("runtime._artifact", "runtime._loaders", "runtime._entry", "_contract", "corpus._embed")
MAX_FUNCTION_LINES = 60  # lines of code: no blank lines, comments or docstrings


def _name(path: Path) -> str:
    """``w2vlab/runtime/_artifact.py`` -> ``runtime._artifact``; a package's ``__init__`` by its folder."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _modules() -> dict[str, ast.Module]:
    return {_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    """module -> the w2vlab modules it imports anywhere in its source (``__init__`` for the package)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, tree in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("w2vlab"):
                base = node.module.removeprefix("w2vlab").lstrip(".")
                targets = [
                    f"{base}.{a.name}".lstrip(".")
                    if f"{base}.{a.name}".lstrip(".") in modules
                    else (base or "__init__")
                    for a in node.names
                ]
            elif isinstance(node, ast.Import):
                targets = [a.name.removeprefix("w2vlab.") for a in node.names if a.name.startswith("w2vlab.")]
            else:
                continue
            graph[name] |= set(targets) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle's members, found by depth-first search from each node."""
    found: set[tuple[str, ...]] = set()

    def walk(path: list[str]) -> None:
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt == path[0]:
                i = path.index(min(path))
                found.add(tuple(path[i:] + path[:i]))
            elif nxt not in path and nxt > path[0]:
                walk(path + [nxt])

    for start in sorted(graph):
        walk([start])
    return [list(c) for c in sorted(found)]


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def layer(module: str) -> str:
    """``runtime._loaders`` -> ``runtime``; ``_contract`` -> ``leaves``; ``cli`` -> ``app``."""
    top = module.split(".")[0]
    if top in SUBPACKAGES:
        return top
    if module in APP:
        return "app"
    assert "." not in module, f"{module}: a folder with no rule in ALLOWED"
    return "leaves"


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import that crosses a line: ``importer (layer) -> imported (layer)``."""
    return [
        f"{src} ({layer(src)}) -> {dst} ({layer(dst)})"
        for src, targets in sorted(graph.items())
        for dst in sorted(targets)
        if layer(dst) not in ALLOWED[layer(src)]
    ]


def test_the_rule_catches_a_wrong_import():
    planted = {"runtime._x": {"model._encoder"}, "export._y": {"lab._plots"}, "corpus._z": {"bench._harness"}}
    assert violations(planted) == [
        "corpus._z (corpus) -> bench._harness (bench)",
        "export._y (export) -> lab._plots (lab)",
        "runtime._x (runtime) -> model._encoder (model)",
    ]
    assert violations({"_new_leaf": {"_contract"}, "lab._w": {"export._suite", "corpus._embed"}}) == []
    assert layer("_new_leaf") == "leaves" and layer("model._new") == "model"  # a new file inherits its folder


def test_every_folder_has_a_rule():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == SUBPACKAGES


def test_imports_follow_the_layers():
    graph = import_graph()
    assert graph["export._pipeline"] >= {"_contract", "export._formats", "runtime._loaders"}  # the graph is read
    assert violations(graph) == []


def test_nothing_imports_the_benchmark():
    graph = import_graph()
    importers = {src for src, targets in graph.items() for dst in targets if layer(dst) == "bench"}
    assert {layer(src) for src in importers} <= {"bench"}, importers


def test_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("module", CONSUMER)
def test_consumer_side_never_reaches_the_exporter(module):
    reached = {layer(m) for m in reachable(import_graph(), module)}
    assert reached <= {"leaves", "runtime", "corpus"}, f"{module} reaches {sorted(reached)}"


def test_leaves_import_only_leaves_and_the_contract_nothing():
    graph = import_graph()
    assert graph["_contract"] == set()
    assert {m for m in graph if layer(m) == "leaves"} >= {"_contract", "_audio", "_features", "_parity"}


def _code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef, source: list[str]) -> int:
    body = (
        fn.body[1:]
        if fn.body
        and isinstance(fn.body[0], ast.Expr)
        and isinstance(fn.body[0].value, ast.Constant)
        and isinstance(fn.body[0].value.value, str)
        else fn.body
    )
    if not body:
        return 0
    docstring_lines = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            docstring_lines |= set(range(node.lineno, node.end_lineno + 1))
    lines = range(body[0].lineno, fn.end_lineno + 1)
    return sum(
        1
        for i in lines
        if i not in docstring_lines and source[i - 1].strip() and not source[i - 1].strip().startswith("#")
    )


def function_lengths() -> dict[str, int]:
    """``module.function`` -> lines of code, for every function and method in the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(source))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out[f"{_name(path)}.{node.name}:{node.lineno}"] = _code_lines(node, source)
    return out


def test_functions_stay_short():
    lengths = function_lengths()
    assert len(lengths) > 100 and max(lengths.values()) > 20  # the package was read
    long = {name: n for name, n in lengths.items() if n > MAX_FUNCTION_LINES}
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines of code: {long}"
