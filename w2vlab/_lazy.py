"""Lazy public namespaces: a package names what it promises, and loads a module on first use.

``import w2vlab`` (or ``w2vlab.export``) stays cheap and cycle-free: a name's module is imported
the first time the name is read, so reading ``w2vlab.load_artifact`` never imports the exporter.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def attach(package: str, exports: Mapping[str, str]) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package``, whose public names are ``exports``.

    Args:
        package: the package's ``__name__``.
        exports: public name -> the module that defines it, relative to ``package``
            (``"_artifact"``) or absolute (``"w2vlab.runtime._artifact"``).
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = exports[name]
        return getattr(importlib.import_module(module if module.startswith("w2vlab") else f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return sorted(exports), __getattr__, __dir__
