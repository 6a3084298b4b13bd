"""One-line checks for notebooks: the number, its bound and a mark, never a bare ``True``.

``check(max_diff, "<=", 1e-5, label="max|diff|")`` prints ``max|diff| 3.1e-07 <= 1e-05 ✓`` and returns the
value; when the comparison fails it raises :class:`AssertionError` with the same line (marked ✗), so a
notebook run as a test (nbval) fails on it.  A NaN fails every comparison.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
}


def format_number(x: float, other: float | None = None) -> str:
    """``x`` with the fewest significant digits (2 or more) that neither round it to a whole number it is not
    nor move it to or across ``other``: ``3.1e-07``, ``1e-04`` (not ``0.0001``), ``0.99999999`` (not ``1``), ``0``."""
    x = float(x)
    if not math.isfinite(x) or x.is_integer() and abs(x) < 1e15:
        return str(int(x)) if math.isfinite(x) else str(x)
    text = repr(x)
    for digits in range(2, 18):
        text = f"{x:.{digits}g}"
        shown = float(text)
        same_side = other is None or (shown > other, shown < other) == (x > other, x < other)
        if shown == x or (not shown.is_integer() and same_side):
            return _exponent(text) if 0 < abs(x) < 1e-3 else text
    return text


def exact_number(x: float) -> str:
    """``x`` as the shortest text that reads back as exactly ``x`` (a bound is shown as it was chosen:
    ``1.05``, not ``1.1``), small numbers by their exponent as in :func:`format_number`."""
    x = float(x)
    if not math.isfinite(x) or x.is_integer() and abs(x) < 1e15:
        return str(int(x)) if math.isfinite(x) else str(x)
    text = next(t for t in (f"{x:.{d}g}" for d in range(1, 18)) if float(t) == x)
    return _exponent(text) if 0 < abs(x) < 1e-3 else text


def _exponent(text: str) -> str:
    """``0.0001`` as ``1e-04``, ``0.00032`` as ``3.2e-04``: small numbers read by their exponent."""
    if "e" in text:
        return text
    digits = len(text.lstrip("-0.").replace(".", ""))
    mantissa, exponent = f"{float(text):.{max(digits - 1, 0)}e}".split("e")
    return f"{mantissa}e{exponent}"


def check(value: float, op: str, bound: float, label: str = "value") -> float:
    """Print ``label value op bound ✓`` and return ``value``; raise AssertionError (the line, marked ✗) if not.

    Args:
        value: the measured number (a numpy or torch scalar is read with ``float``).
        op: one of ``<=``, ``<``, ``>=``, ``>``, ``==``.
        bound: what ``value`` is compared with.
        label: what the number is, e.g. ``"max|diff|"``.

    Raises:
        ValueError: ``op`` is not one of the comparisons above.
        AssertionError: the comparison does not hold (NaN never holds).
    """
    if op not in OPS:
        raise ValueError(f"check received op {op!r}; expected one of {', '.join(OPS)}")
    v, b = float(value), float(bound)
    ok = OPS[op](v, b)
    line = f"{label} {format_number(v, b)} {op} {exact_number(b)} {'✓' if ok else '✗'}"
    if not ok:
        raise AssertionError(line)
    print(line)  # noqa: T201  (the one output of a notebook check: the line a reader sees)
    return v
