"""Byte sizes and tolerances: parsing and formatting (pure)."""

from __future__ import annotations

import decimal
import fractions
import functools
import math
import numbers
import operator
import re
from dataclasses import dataclass
from typing import SupportsFloat

KiB = 2**10
MiB = 2**20
GiB = 2**30
TiB = 2**40

_UNITS: dict[str, int] = {
    "b": 1,
    "kib": KiB,
    "mib": MiB,
    "gib": GiB,
    "tib": TiB,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
}
UNIT_NAMES = ("B", "KiB", "MiB", "GiB", "TiB", "KB", "MB", "GB", "TB")
# ASCII digits only: ``\d``, ``str.isdigit`` and ``float`` also take other scripts' digits
# ("٣", and "²" for isdigit), which int() or a reader of the value may then refuse.
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([a-zA-Z]+)?\s*$")
_WHOLE = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BINARY_STEPS = ("B", "KiB", "MiB", "GiB", "TiB")


MAX_FIGURE = 2**63 - 1
"""The largest whole number the plugin takes (bytes, counts): torch's allocator counters are
int64, and a larger value would overflow the floats figures are formatted and compared in."""


MAX_SIGNED_FIGURE = MAX_FIGURE // 2
"""The largest size either side of 0 for a figure that may be negative (``device``,
``non_torch``): the change between two such figures, a baseline's and a run's, is then a
whole number a run file can hold."""


class CgmemUsageError(ValueError):
    """A value given by the user (mark, option, ini key, file) that cannot be used."""


def _as_int(value: object) -> object:
    """An integer of another library (numpy's ``int64``) as an int; anything else as it is."""
    if isinstance(value, (bool, int, float, str)) or not hasattr(type(value), "__index__"):
        return value
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:  # numpy's bool_ has __index__ and refuses it
        return value


def short_repr(value: object) -> str:
    """``repr(value)`` for an error message, cut short where it is long (a number of 400
    digits; Python refuses to write an int of more than 4300 digits at all)."""
    if isinstance(value, int) and value.bit_length() > 200:
        return f"an integer of about {round(value.bit_length() * math.log10(2))} digits"
    try:
        text = repr(value)
    except Exception as exc:  # a list holding such an int; a __repr__ that raises
        return f"a value of type {type(value).__name__} whose repr() raised {type(exc).__name__}"
    return text if len(text) <= 60 else f"{text[:40]}...{text[-12:]} ({len(text)} characters)"


def _too_large() -> CgmemUsageError:
    """Said after the value by every caller (``peak=...: too large...``), so not repeated."""
    return CgmemUsageError(f"too large: the most is {MAX_FIGURE}")


def _unreadable(value: str) -> CgmemUsageError:
    return CgmemUsageError(
        f"cannot read {short_repr(value)} as a size: use a number and a unit, "
        f"one of {', '.join(UNIT_NAMES)} (e.g. '1.5 GiB')"
    )


def parse_size(value: object, *, signed: bool = False) -> int:
    """Bytes from an int or a string such as ``"1.5 GiB"``, ``"512MiB"``, ``"0"``.

    Binary units (KiB..TiB) are powers of 1024, decimal ones (KB..TB) powers of 1000;
    unit letters are case-insensitive. Fractions round to the nearest byte (a tie to the
    even one), exactly: the number is not read through a float, which holds 53 bits.
    ``signed``: a negative size (``-5``, ``"-1 MiB"``) is taken, as a device figure can be,
    within ``MAX_SIGNED_FIGURE`` either side of 0.
    """
    if type(value) is int and (  # the common case at once: bytes a test recorded
        -MAX_SIGNED_FIGURE <= value <= MAX_SIGNED_FIGURE if signed else 0 <= value <= MAX_FIGURE
    ):
        return value
    value = _as_int(value)
    if signed:
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            negative, magnitude = True, parse_size(-value)
        elif isinstance(value, str) and re.match(r"\s*-(?!\s*-)", value):  # not "--5"
            rest = value.strip()[1:]
            if _SIZE.match(rest) is None:  # "-", "-+5": the refusal quotes what was given
                raise _unreadable(value)
            negative, magnitude = True, parse_size(rest)
        else:
            negative, magnitude = False, parse_size(value)
        if magnitude > MAX_SIGNED_FIGURE:
            raise CgmemUsageError(f"too large: the most either side of 0 is {MAX_SIGNED_FIGURE}")
        return -magnitude if negative else magnitude
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise CgmemUsageError(
            f"expected bytes as an int or a string like '512 MiB', got {short_repr(value)}"
        )
    if isinstance(value, int):
        if value < 0:
            raise CgmemUsageError(f"a size cannot be negative: {short_repr(value)}")
        if value > MAX_FIGURE:
            raise _too_large()
        return value
    match = _SIZE.match(value)
    if match is None:
        negative = _SIZE.match(value.strip().removeprefix("-")) is not None
        if negative:
            raise CgmemUsageError(f"a size cannot be negative: {short_repr(value)}")
        raise _unreadable(value)
    number, unit = match.groups()
    factor = _UNITS.get((unit or "b").lower())
    if factor is None:
        raise CgmemUsageError(
            f"unknown unit {unit!r} in {short_repr(value)}: use one of {', '.join(UNIT_NAMES)}"
        )
    whole = number.split(".")[0].lstrip("0")
    if len(whole) > len(str(MAX_FIGURE)):  # also past what a decimal context can hold
        raise _too_large()
    with decimal.localcontext() as context:
        context.prec = len(number) + len(str(factor))  # every digit of the product: exact
        size = (decimal.Decimal(number) * factor).to_integral_value(decimal.ROUND_HALF_EVEN)
    if size > MAX_FIGURE:
        raise _too_large()
    return int(size)


_BOOL_DTYPES = frozenset(("bool", "torch.bool"))
"""A flag's dtype as numpy and torch print it: a bool tensor's ``__index__`` gives 1 or 0."""


def as_whole(value: object) -> int | None:
    """``value`` as an int: an int, or what its ``__index__`` gives (numpy and torch
    integers); None for a bool (a bool tensor too), a float, or an ``__index__`` that
    raises (a float tensor, one of several elements)."""
    if isinstance(value, bool) or str(getattr(value, "dtype", "")) in _BOOL_DTYPES:
        return None
    if isinstance(value, int):
        return value
    index = getattr(value, "__index__", None)
    try:
        whole = None if index is None else index()
    except (TypeError, ValueError, RuntimeError):
        return None
    return whole if isinstance(whole, int) and not isinstance(whole, bool) else None


def format_size(num_bytes: float) -> str:
    """Human-readable binary size with two decimals: ``2.40 GiB``, ``512 B``."""
    try:
        # float() reads "5" and b"5"; True is no count of bytes
        if isinstance(num_bytes, (str, bytes, bytearray, bool)):
            raise TypeError
        number = float(num_bytes)
    except (TypeError, ValueError):  # a string, None, an array of several numbers
        raise TypeError(
            f"format_size: num_bytes must be a number of bytes, got {short_repr(num_bytes)}"
        ) from None
    except OverflowError:  # an int beyond any float
        raise ValueError(
            f"format_size: num_bytes is too large to show, got {short_repr(num_bytes)}"
        ) from None
    if not math.isfinite(number):
        raise ValueError(
            f"format_size: num_bytes must be a finite number of bytes, got {short_repr(num_bytes)}"
        )
    sign = "-" if number < 0 else ""
    size = abs(number)
    if size < 1024:
        return f"{sign}{int(size)} B"
    for unit in _BINARY_STEPS[1:]:
        size /= 1024
        if round(size, 2) < 1024 or unit == _BINARY_STEPS[-1]:
            return f"{sign}{size:.2f} {unit}"
    raise AssertionError("unreachable")


def whole_number(text: str) -> int | None:
    """``text`` (surrounding spaces allowed) as a whole number >= 0 in ASCII digits, else None.

    ``"²".isdigit()`` is True and ``int("٣")`` is 3: every integer the plugin reads goes
    through here so that neither passes as a number.
    """
    stripped = text.strip()
    if not _WHOLE.fullmatch(stripped):
        return None
    digits = stripped.lstrip("0") or "0"  # int() refuses more than 4300 digits, zeros too
    if len(digits) > len(str(MAX_FIGURE)) or int(digits) > MAX_FIGURE:
        raise _too_large()
    return int(digits)


def _number(text: str) -> float | None:
    """A decimal number in ASCII (``1.5``, ``-2e3``), else None; no ``inf``, ``nan`` or ``1_0``."""
    stripped = text.strip()
    return float(stripped) if _NUMBER.fullmatch(stripped) else None


def parse_count(value: object) -> int:
    """A non-negative whole number (graph captures, replays)."""
    value = _as_int(value)
    if isinstance(value, bool):
        raise CgmemUsageError(f"expected a whole number, got {value!r}")
    if isinstance(value, str) and (number := whole_number(value)) is not None:
        return number
    if isinstance(value, int) and value >= 0:
        if value > MAX_FIGURE:
            raise _too_large()
        return value
    raise CgmemUsageError(f"expected a whole number >= 0, got {short_repr(value)}")


def parse_ratio(value: object, *, zero: bool = False) -> float:
    """A positive finite number such as ``1.5`` (reserved_ratio); ``zero``: 0 too, as a
    measured figure can be."""
    if isinstance(value, bool):
        raise CgmemUsageError(f"expected a number, got {value!r}")
    number: float
    if isinstance(value, (numbers.Real, decimal.Decimal)):  # np.float32 is a Real too
        try:
            number = as_float(value)
        except (ArithmeticError, TypeError, ValueError):  # Decimal("sNaN")
            raise CgmemUsageError(
                f"expected a number such as 1.5, got {short_repr(value)}"
            ) from None
    elif isinstance(value, str):
        parsed = _number(value)
        if parsed is None:
            raise CgmemUsageError(f"expected a number such as 1.5, got {short_repr(value)}")
        number = parsed
    else:
        raise CgmemUsageError(f"expected a number such as 1.5, got {short_repr(value)}")
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        said = "a positive finite number or 0" if zero else "a positive finite number"
        raise CgmemUsageError(f"expected {said}, got {short_repr(value)}")
    return number


def as_float(value: SupportsFloat) -> float:
    """``float(value)``, an int too large for a float being infinite rather than an error."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


@dataclass(frozen=True)
class Tolerance:
    """How far a figure may move past its baseline: relative and/or absolute slack."""

    rel: float = 0.0
    abs: int = 0

    def judge(self, baseline: float, value: float, *, absolute: bool = True) -> int:
        """1 where ``value`` grew past the tolerance, -1 where it shrank past it, else 0.

        ``value - baseline`` against ``max(rel * |baseline|, abs)`` (``abs`` only where
        ``absolute``: byte figures), in exact arithmetic: with floats, ``57%`` of 100 is
        56.99999999999999 (a figure at the boundary would move past it), and a figure
        beyond 2**53 is rounded (an unchanged one could regress under ``0% 0B``).
        """
        num, den = _ratio(self.rel)
        slack = num * abs(baseline)
        if absolute:
            slack = max(slack, self.abs * den)
        moved = (value - baseline) * den
        return 1 if moved > slack else -1 if moved < -slack else 0

    def allows(self, baseline: float, value: float) -> bool:
        return self.judge(baseline, value) <= 0


@functools.lru_cache(maxsize=256)
def _ratio(rel: float) -> tuple[int, int]:
    """A relative tolerance as the ratio it was written as: ``"57%"`` is read as the float
    nearest 0.57, and the nearest ratio with a denominator up to 10**9 is 57/100 again."""
    exact = fractions.Fraction(rel).limit_denominator(10**9)
    return exact.numerator, exact.denominator


def parse_percent(value: object) -> float:
    """A relative tolerance from ``"5%"``, ``"0.5 %"`` or a fraction such as ``0.05``.

    A fraction above 1 is refused: ``5`` is far likelier to mean 5% than 500% (a string
    says more than 100%: ``"150%"``).
    """
    if isinstance(value, bool):
        raise CgmemUsageError(f"expected a percentage such as '5%', got {value!r}")
    if isinstance(value, (int, float)):
        fraction = as_float(value)
    elif isinstance(value, str) and value.strip().endswith("%"):
        number = _number(value.strip()[:-1])
        if number is None:
            raise CgmemUsageError(f"expected a percentage such as '5%', got {short_repr(value)}")
        fraction = number / 100
    else:
        raise CgmemUsageError(f"expected a percentage such as '5%', got {short_repr(value)}")
    if not math.isfinite(fraction):
        raise CgmemUsageError(f"a tolerance must be a finite percentage, got {short_repr(value)}")
    if fraction < 0:
        raise CgmemUsageError(f"a tolerance must be >= 0%, got {short_repr(value)}")
    if fraction > 1 and not isinstance(value, str):
        raise CgmemUsageError(
            f"a fraction is at most 1, got {short_repr(value)}: write '{value}%' for "
            f"{value} percent, or a string such as '150%' for more than 100%"
        )
    return fraction
