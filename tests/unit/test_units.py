import contextlib
import dataclasses
import math
import re
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_cgmem.units import (
    MAX_FIGURE,
    MAX_SIGNED_FIGURE,
    CgmemUsageError,
    Tolerance,
    format_size,
    parse_count,
    parse_percent,
    parse_ratio,
    parse_size,
    short_repr,
    whole_number,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("512", 512),
        ("512 B", 512),
        ("1KiB", 1024),
        ("1.5 GiB", 3 * 2**29),
        ("2 MiB", 2 * 2**20),
        ("1 TiB", 2**40),
        ("1 KB", 1000),
        ("1.5GB", 1_500_000_000),
        ("3 MB", 3_000_000),
        ("1 TB", 10**12),
        ("  4 gib  ", 4 * 2**30),
        (".5 KiB", 512),
        (7, 7),
    ],
)
def test_parse_size(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "bad",
    ["1.5 GB/s", "-1 MiB", "lots", "", "1 MiBs", "1e3 MiB", "MiB", "1 2 MiB", -1, 1.5, True, None],
)
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(CgmemUsageError) as info:
        parse_size(bad)
    assert repr(bad) in str(info.value) or str(bad) in str(info.value)
    assert "\n" not in str(info.value)


_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "KB": 1000, "MB": 10**6}


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(_UNITS)), st.booleans())
def test_parse_size_round_trips_whole_numbers(number: int, unit: str, space: bool) -> None:
    text = f"{number}{' ' if space else ''}{unit}"
    assert parse_size(text) == number * _UNITS[unit]
    assert parse_size(text.lower()) == number * _UNITS[unit]


@given(st.integers(min_value=0, max_value=2**50))
def test_format_then_parse_is_within_rounding(num_bytes: int) -> None:
    text = format_size(num_bytes)
    back = parse_size(text)
    assert math.isclose(back, num_bytes, rel_tol=0.005, abs_tol=1)


@given(st.integers(min_value=0, max_value=2**50))
def test_parse_size_accepts_ints_unchanged(num_bytes: int) -> None:
    assert parse_size(num_bytes) == num_bytes
    assert parse_size(str(num_bytes)) == num_bytes


@pytest.mark.parametrize(
    ("num_bytes", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (int(2.4 * 2**30), "2.40 GiB"),
        (2**20 * 512, "512.00 MiB"),
        (-(2**20), "-1.00 MiB"),
        (2**50, "1024.00 TiB"),
    ],
)
def test_format_size(num_bytes: int, text: str) -> None:
    assert format_size(num_bytes) == text


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (3, 3), ("12", 12), (" 4 ", 4)])
def test_parse_count(value: object, expected: int) -> None:
    assert parse_count(value) == expected


@pytest.mark.parametrize("bad", [-1, "1.5", "two", True, 1.0, None])
def test_parse_count_rejects(bad: object) -> None:
    with pytest.raises(CgmemUsageError):
        parse_count(bad)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.5, 1.5),
        (2, 2.0),
        ("1.25", 1.25),
        (Fraction(3, 2), 1.5),
        (Decimal("1.5"), 1.5),
    ],
)
def test_parse_ratio(value: object, expected: float) -> None:
    """Any real number, a Fraction or a Decimal too (they were refused as "expected a
    number")."""
    assert parse_ratio(value) == expected


def test_parse_ratio_takes_a_numpy_float32() -> None:
    """A numpy float32 is no float, but a ``numbers.Real``."""
    numpy = pytest.importorskip("numpy")
    assert parse_ratio(numpy.float32(1.5)) == 1.5


@pytest.mark.parametrize(
    "bad",
    [0, -1.0, "nan", "inf", "x", True, None, Decimal("sNaN"), Decimal("NaN"), Fraction(-1, 2)],
)
def test_parse_ratio_rejects(bad: object) -> None:
    with pytest.raises(CgmemUsageError):
        parse_ratio(bad)


@pytest.mark.parametrize(("value", "expected"), [("5%", 0.05), ("0.5 %", 0.005), (0.1, 0.1)])
def test_parse_percent(value: object, expected: float) -> None:
    assert parse_percent(value) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["5", "-5%", "x%", True, "nan%", 5, 1.5])
def test_parse_percent_rejects(bad: object) -> None:
    with pytest.raises(CgmemUsageError):
        parse_percent(bad)


def test_tolerance_allows_the_larger_slack() -> None:
    tol = Tolerance(rel=0.05, abs=100)
    assert tol.allows(1000, 1100)
    assert not tol.allows(1000, 1101)
    assert tol.allows(10**6, 10**6 + 50_000)
    assert not tol.allows(10**6, 10**6 + 50_001)


# Other scripts' digits: "²".isdigit() is True, and \d, int() and float() take "٣" (3).
NON_ASCII_DIGITS = ["²", "٣", "１", "३", "1²", "٣ MiB", "1.٥ GiB", "١٠%"]


@pytest.mark.parametrize("text", NON_ASCII_DIGITS)
def test_non_ascii_digits_are_refused_with_a_usage_error(text: str) -> None:
    for parse in (parse_size, parse_count, parse_ratio, parse_percent):
        with pytest.raises(CgmemUsageError):
            parse(text)


@given(st.text(min_size=1, max_size=6))
def test_whole_number_takes_ascii_digits_only(text: str) -> None:
    from pytest_cgmem.units import whole_number

    number = whole_number(text)
    stripped = text.strip()
    if stripped and all(c in "0123456789" for c in stripped):
        assert number == int(stripped)
    else:
        assert number is None


@given(st.text(max_size=8))
def test_parsers_raise_only_usage_errors(text: str) -> None:
    """Whatever the text, a parser returns a value or raises CgmemUsageError, nothing else."""
    for parse in (parse_size, parse_count, parse_ratio, parse_percent):
        with contextlib.suppress(CgmemUsageError):
            parse(text)


HUGE = [10**400, 10**5000, "9" * 400, "9" * 5000, "9" * 400 + " GiB", "1e999"]


@pytest.mark.parametrize("parse", [parse_size, parse_count, parse_ratio, parse_percent])
@pytest.mark.parametrize("value", HUGE, ids=range(len(HUGE)))
def test_a_number_too_large_is_a_short_usage_error(parse, value) -> None:
    with pytest.raises(CgmemUsageError) as info:
        parse(value)
    assert len(str(info.value)) < 200
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("parse", "value", "message"),
    [
        (parse_size, 10**400, "too large: the most is 9223372036854775807"),
        (parse_size, "9" * 400 + "GiB", "too large: the most is 9223372036854775807"),
        # past what a decimal context holds: a usage error, not decimal.Overflow
        (parse_size, "1" * 1_000_001, "too large: the most is 9223372036854775807"),
        (parse_size, "1" * 1_000_001 + ".5 KiB", "too large: the most is 9223372036854775807"),
        (parse_size, MAX_FIGURE + 1, "too large: the most is 9223372036854775807"),
        (parse_count, 2**64, "too large: the most is 9223372036854775807"),
        (parse_percent, "1e999%", "a tolerance must be a finite percentage, got '1e999%'"),
        (parse_ratio, 10**400, "a positive finite number, got an integer of about 400 digits"),
    ],
    ids=[
        "int",
        "string",
        "million-digits",
        "million-digits-kib",
        "past-int64",
        "count",
        "percent",
        "ratio",
    ],
)
def test_a_number_too_large_says_so(parse, value, message) -> None:
    with pytest.raises(CgmemUsageError, match=re.escape(message)):
        parse(value)


@pytest.mark.parametrize("text", ["-1", "-1 GiB", " -0.5MiB"])
def test_a_negative_size_string_says_it_is_negative(text: str) -> None:
    with pytest.raises(CgmemUsageError, match="a size cannot be negative"):
        parse_size(text)


def test_the_largest_figure_is_taken() -> None:
    assert parse_size(MAX_FIGURE) == MAX_FIGURE
    assert parse_count(str(MAX_FIGURE)) == MAX_FIGURE
    assert whole_number("0" * 30 + "7") == 7


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("short", "'short'"),
        (12, "12"),
        ("x" * 100, "'" + "x" * 39 + "...xxxxxxxxxxx' (102 characters)"),
        (10**5000, "an integer of about 5000 digits"),
        (-(10**300), "an integer of about 300 digits"),
        ([0, 10**5000], "a value of type list whose repr() raised ValueError"),
        ({"peak": 10**5000}, "a value of type dict whose repr() raised ValueError"),
        (_BadRepr(), "a value of type _BadRepr whose repr() raised RuntimeError"),
    ],
    ids=["short", "int", "long", "huge", "negative", "list-huge", "dict-huge", "bad-repr"],
)
def test_short_repr(value: object, expected: str) -> None:
    assert short_repr(value) == expected


def test_a_fraction_above_1_says_how_to_write_a_percentage() -> None:
    with pytest.raises(CgmemUsageError, match="a fraction is at most 1, got 5: write '5%' for 5"):
        parse_percent(5)
    assert parse_percent(1) == 1.0
    assert parse_percent("150%") == 1.5


@pytest.mark.parametrize(
    ("value", "shown"),
    [("1 GiB", "'1 GiB'"), (None, "None"), ([1, 2], "[1, 2]"), (b"5", "b'5'"), (True, "True")],
    ids=["string", "none", "list", "bytes", "bool"],
)
def test_format_size_names_what_is_no_number(value: object, shown: str) -> None:
    """A string or None was a TypeError from '<' that named neither the function nor the
    value."""
    with pytest.raises(TypeError) as info:
        format_size(value)  # type: ignore[arg-type]
    assert str(info.value) == f"format_size: num_bytes must be a number of bytes, got {shown}"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (float("nan"), "must be a finite number of bytes, got nan"),
        (float("-inf"), "must be a finite number of bytes, got -inf"),
        (10**400, "is too large to show, got an integer of about 400 digits"),
    ],
)
def test_format_size_refuses_what_it_cannot_show(value: object, shown: str) -> None:
    """NaN showed as 'nan TiB', and an int beyond any float was an OverflowError."""
    with pytest.raises(ValueError) as info:
        format_size(value)  # type: ignore[arg-type]
    assert str(info.value) == f"format_size: num_bytes {shown}"


@given(st.one_of(st.integers(-(2**62), 2**62), st.floats(allow_nan=False, allow_infinity=False)))
def test_format_size_of_a_number_is_as_before(value: float) -> None:
    sign = "-" if value < 0 else ""
    size = abs(float(value))
    if size < 1024:
        assert format_size(value) == f"{sign}{int(size)} B"
    else:
        assert format_size(value).startswith(sign) and format_size(value)[-3:] in (
            "KiB",
            "MiB",
            "GiB",
            "TiB",
        )


@pytest.mark.parametrize(
    ("num_bytes", "text"),
    [
        (2**20 - 1, "1.00 MiB"),  # 1023.999 KiB rounds to 1024.00: the next unit says it
        (2**20 - 512, "1023.50 KiB"),  # two decimals, not a whole number, decide the step
        (2**30 - 2**20, "1023.00 MiB"),
    ],
    ids=["rounds-up-a-unit", "half-stays", "whole-stays"],
)
def test_format_size_steps_up_where_two_decimals_would_show_1024(num_bytes: int, text: str) -> None:
    assert format_size(num_bytes) == text


def test_the_largest_count_is_taken_as_an_int() -> None:
    assert parse_count(MAX_FIGURE) == MAX_FIGURE
    with pytest.raises(CgmemUsageError, match="too large"):
        parse_count(MAX_FIGURE + 1)


@pytest.mark.parametrize(
    ("baseline", "value", "expected"),
    [(1000, 1101, 1), (1000, 899, -1), (1000, 1100, 0), (1000, 900, 0), (1000, 1000, 0)],
)
def test_tolerance_judge_says_1_minus_1_or_0(baseline: int, value: int, expected: int) -> None:
    assert Tolerance(rel=0.1).judge(baseline, value) == expected


def test_the_default_tolerance_has_no_slack() -> None:
    assert Tolerance().judge(100, 101) == 1
    assert Tolerance().judge(100, 99) == -1
    assert Tolerance().judge(100, 100) == 0


def test_a_tolerance_is_frozen_and_hashable() -> None:
    tol = Tolerance(rel=0.05, abs=100)
    assert hash(tol) == hash(Tolerance(rel=0.05, abs=100))
    with pytest.raises(dataclasses.FrozenInstanceError):
        tol.abs = 0  # type: ignore[misc]


class _RefusesIndex:
    """Like numpy's ``bool_``: it has ``__index__``, which refuses it."""

    def __index__(self) -> int:
        raise TypeError("not an integer")

    def __repr__(self) -> str:
        return "refuses-index"


@pytest.mark.parametrize("parse", [parse_size, parse_count])
def test_a_value_whose_index_refuses_is_refused_naming_it(parse: Callable[[object], int]) -> None:
    with pytest.raises(CgmemUsageError) as info:
        parse(_RefusesIndex())
    assert "refuses-index" in str(info.value)


class _Int(int):
    """An int parse_size reads through its general path (the quick path takes exact ints)."""


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize(
    "value",
    [
        0,
        1,
        -1,
        MAX_SIGNED_FIGURE,
        MAX_SIGNED_FIGURE + 1,
        -MAX_SIGNED_FIGURE,
        -MAX_SIGNED_FIGURE - 1,
        MAX_FIGURE,
        MAX_FIGURE + 1,
        -MAX_FIGURE,
    ],
)
def test_an_int_size_is_read_as_the_general_path_reads_it(value: int, signed: bool) -> None:
    def read(given: int) -> int | str:
        try:
            return parse_size(given, signed=signed)
        except CgmemUsageError as exc:
            return str(exc)

    assert read(value) == read(_Int(value))


@given(st.integers(min_value=-(2**64), max_value=2**64), st.booleans())
def test_an_int_size_reads_as_its_digits_do(value: int, signed: bool) -> None:
    def read(given: object) -> int | None:
        try:
            return parse_size(given, signed=signed)
        except CgmemUsageError:
            return None

    assert read(value) == read(str(value))
