"""The package's shape, read from its source: imports flow one way, and functions stay short.

Every ``import`` of a w2vlab module counts, at the top of a file or inside a function (a lazy
import that closes a cycle is still a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "w2vlab"
# What the consumer may reach: the contract, the loaders and what they need to embed audio.
CONSUMER = ("runtime._artifact", "runtime._loaders", "runtime._entry", "_contract", "corpus._embed")
EXPORTER_SIDE = {
    "export._pipeline",
    "model._checkpoint",
    "model._encoder",
    "model._demo",
    "export._suite",
    "export._torchscript",
    "export._formats",
    "export._card",
    "model._config",
    "export._naive",
    "export._rewrites",
}
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


def test_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = import_graph()
    assert graph["export._pipeline"] >= {
        "_contract",
        "export._formats",
        "runtime._loaders",
        "export._torchscript",
    }  # the graph is read
    assert cycles(graph) == []


@pytest.mark.parametrize("module", CONSUMER)
def test_consumer_side_never_reaches_the_exporter(module):
    reached = reachable(import_graph(), module)
    assert not reached & EXPORTER_SIDE, f"{module} reaches {sorted(reached & EXPORTER_SIDE)}"


def test_contract_is_a_leaf():
    assert import_graph()["_contract"] == set()


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
