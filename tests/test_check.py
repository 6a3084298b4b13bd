"""check(): one line with the number and its bound; an AssertionError with the same line when it fails."""

import math

import numpy as np
import pytest

from w2vlab.lab import check
from w2vlab.lab._check import format_number


def test_a_passing_check_prints_the_number_and_its_bound(capsys):
    assert check(3.1e-07, "<=", 1e-05, label="max|diff|") == 3.1e-07
    assert capsys.readouterr().out == "max|diff| 3.1e-07 <= 1e-05 ✓\n"


def test_a_cosine_near_one_is_not_rounded_to_one(capsys):
    check(np.float64(0.99999999), ">=", 0.99999, label="cosine")
    assert capsys.readouterr().out == "cosine 0.99999999 >= 0.99999 ✓\n"


@pytest.mark.parametrize(
    ("value", "op", "bound", "line"),
    [
        (2e-4, "<=", 1e-05, "max|diff| 2e-04 <= 1e-05 ✗"),
        (0.99998, ">=", 0.99999, "max|diff| 0.99998 >= 0.99999 ✗"),
        (1.0, "<", 1.0, "max|diff| 1 < 1 ✗"),
        (math.nan, "<=", 1.0, "max|diff| nan <= 1 ✗"),
    ],
)
def test_a_failing_check_raises_with_the_same_line(capsys, value, op, bound, line):
    with pytest.raises(AssertionError) as raised:
        check(value, op, bound, label="max|diff|")
    assert str(raised.value) == line
    assert capsys.readouterr().out == ""  # the line is the error's, not printed twice


def test_an_unknown_comparison_is_refused():
    with pytest.raises(ValueError, match="op '=<'; expected one of <=, <, >=, >, =="):
        check(1.0, "=<", 2.0)


def test_format_number_keeps_the_digits_that_matter():
    assert format_number(0.0) == "0"
    assert format_number(12) == "12"
    assert format_number(3e-05) == "3e-05"
    assert format_number(1e-4) == "1e-04" and format_number(0.00032) == "3.2e-04"
    assert format_number(-2.5e-4) == "-2.5e-04"
    assert format_number(0.012) == "0.012"
    assert format_number(0.99999, 0.99998) == "0.99999"
    assert format_number(0.99998, 0.99999) == "0.99998"
    assert format_number(1.155e-05, 1.16e-05) == "1.15e-05"  # "1.2e-05" would read as the bound or over it
    assert format_number(math.inf) == "inf"


def test_the_bound_is_printed_exactly_as_chosen(capsys):
    check(1.0005, "<=", 1.05, label="ratio")  # two significant digits would print the bound as 1.1
    assert capsys.readouterr().out == "ratio 1.0005 <= 1.05 ✓\n"
    check(2.4e-07, "<=", 1e-06, label="max|diff|")
    assert capsys.readouterr().out == "max|diff| 2.4e-07 <= 1e-06 ✓\n"
