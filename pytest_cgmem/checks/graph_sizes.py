"""CUDA graph checks on figures: capture-size coverage, silent capping, estimate vs truth.

Usable with no GPU (config tests run them on CPU runners). Each check returns a record
with its message, or None; the ``assert_*`` functions raise it as an AssertionError
subclass, so a buggy example can be ``xfail(strict=True, raises=SizesNotCovered)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ..failures import EstimateMismatch, SizesNotCaptured, SizesNotCovered
from ..units import (
    MAX_FIGURE,
    CgmemUsageError,
    as_whole,
    format_size,
    parse_percent,
    parse_size,
    short_repr,
)

_SHOWN = 20


def _sizes(values: Iterable[object], what: str) -> list[int]:
    """Validated sizes: whole numbers from 1 to ``MAX_FIGURE`` (bools and floats are refused)."""
    __tracebackhide__ = True
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise CgmemUsageError(f"{what}: expected a collection of sizes, got {short_repr(values)}")
    result = []
    for value in values:
        whole = as_whole(value)
        if whole is None:
            raise CgmemUsageError(f"{what}: sizes are whole numbers, got {short_repr(value)}")
        if whole < 1:
            raise CgmemUsageError(f"{what}: sizes are >= 1, got {short_repr(whole)}")
        if whole > MAX_FIGURE:
            raise CgmemUsageError(
                f"{what}: too large: the most is {MAX_FIGURE}, got {short_repr(whole)}"
            )
        result.append(whole)
    return result


def format_sizes(sizes: Iterable[int], shown: int = _SHOWN) -> str:
    """``1, 2, 4, 8..12, 513..1024`` — runs of consecutive sizes collapsed, at most
    ``shown`` items, then ``... (N more sizes)``."""
    ordered = sorted(set(sizes))
    runs: list[tuple[int, int]] = []
    for size in ordered:
        if runs and size == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], size)
        else:
            runs.append((size, size))
    items = []
    for first, last in runs:
        if first == last:
            items.append(str(first))
        elif last == first + 1:
            items.extend((str(first), str(last)))
        else:
            items.append(f"{first}..{last}")
    if len(items) <= shown:
        return ", ".join(items)
    rest = 0
    text = ", ".join(items[:shown])
    for item in items[shown:]:
        first_s, _, last_s = item.partition("..")
        rest += int(last_s) - int(first_s) + 1 if last_s else 1
    return f"{text}, ... ({rest} more size{'s' if rest != 1 else ''})"


def pad_to_captured(captured: Iterable[int], size: int) -> int | None:
    """The captured size a runtime ``size`` pads up to (the smallest captured >= it)."""
    __tracebackhide__ = True
    (size,) = _sizes([size], "runtime")
    candidates = [c for c in _sizes(captured, "captured") if c >= size]
    return min(candidates) if candidates else None


def uncovered_sizes(captured: Iterable[int], runtime: Iterable[int]) -> list[int]:
    """Runtime sizes that pad to no captured size — larger than the largest captured.

    A runtime batch pads up to the smallest captured size that holds it; a batch larger
    than every captured size has no graph and runs eagerly. Sorted, without repeats.
    """
    __tracebackhide__ = True
    caps = _sizes(captured, "captured")
    largest = max(caps, default=0)
    return sorted({s for s in _sizes(runtime, "runtime") if s > largest})


@dataclass(frozen=True)
class SizeViolation:
    """Sizes a graph check found missing, with the message a user sees."""

    kind: str  # "uncovered" or "not_captured"
    sizes: tuple[int, ...]
    largest_captured: int | None
    message: str


def check_sizes_covered(captured: Iterable[int], runtime: Iterable[int]) -> SizeViolation | None:
    """None when every runtime size pads to a captured size, else what runs eagerly."""
    __tracebackhide__ = True
    caps = _sizes(captured, "captured")
    missing = uncovered_sizes(caps, runtime)
    if not missing:
        return None
    largest = max(caps, default=None)
    where = (
        f"largest captured size is {largest}"
        if largest is not None
        else "no size was captured at all"
    )
    n = len(missing)
    message = (
        f"cgmem: {n} runtime size{'s' if n != 1 else ''} pad{'s' if n == 1 else ''} to no "
        f"captured CUDA graph size and will run eagerly: {format_sizes(missing)} ({where}; "
        f"capture {missing[-1]} or cap the runtime size at {largest or 'a captured size'})"
    )
    return SizeViolation("uncovered", tuple(missing), largest, message)


def assert_sizes_covered(captured: Iterable[int], runtime: Iterable[int]) -> None:
    """Raise SizesNotCovered listing the runtime sizes larger than every captured size."""
    __tracebackhide__ = True
    violation = check_sizes_covered(captured, runtime)
    if violation is not None:
        raise SizesNotCovered(violation)


def check_all_captured(requested: Iterable[int], captured: Iterable[int]) -> SizeViolation | None:
    """None when every requested size was captured, else the ones that were dropped."""
    __tracebackhide__ = True
    wanted = set(_sizes(requested, "requested"))
    got = set(_sizes(captured, "captured"))
    missing = sorted(wanted - got)
    if not missing:
        return None
    largest = max(got, default=None)
    n = len(missing)
    capped = ""
    if largest is not None and missing[0] > largest:
        capped = f"; every missing size is above {largest}: the sizes look silently capped"
    message = (
        f"cgmem: {n} requested CUDA graph capture size{'s were' if n != 1 else ' was'} never "
        f"captured: {format_sizes(missing)} (captured {len(wanted & got)} of {len(wanted)} "
        f"requested{capped})"
    )
    return SizeViolation("not_captured", tuple(missing), largest, message)


def assert_all_captured(requested: Iterable[int], captured: Iterable[int]) -> None:
    """Raise SizesNotCaptured listing the requested sizes that were never captured."""
    __tracebackhide__ = True
    violation = check_all_captured(requested, captured)
    if violation is not None:
        raise SizesNotCaptured(violation)


@dataclass(frozen=True)
class EstimateViolation:
    """An estimate held against the measured truth, and by how much it missed."""

    what: str
    estimate: int
    measured: int
    allowed: float
    message: str

    @property
    def error(self) -> int:
        return self.estimate - self.measured


def check_description(where: str, value: object, *, empty: bool = False) -> None:
    """``what`` names the checked thing in a failure's one line: a printable string (no
    newline or tab), non-empty unless ``empty``; anything else is a usage error."""
    __tracebackhide__ = True
    if not isinstance(value, str) or not value.isprintable() or not (value or empty):
        kind = "a printable string" if empty else "a non-empty printable string"
        raise CgmemUsageError(
            f"{where}: what must be {kind} (no newline or tab), got {short_repr(value)}"
        )


def _tolerance(rel: object, abs_: object) -> tuple[float, int]:
    __tracebackhide__ = True
    try:
        fraction = 0.0 if rel is None else parse_percent(rel)
    except CgmemUsageError as exc:
        raise CgmemUsageError(f"rel={short_repr(rel)}: {exc}") from None
    try:
        slack = 0 if abs_ is None else parse_size(abs_)
    except CgmemUsageError as exc:
        raise CgmemUsageError(f"abs={short_repr(abs_)}: {exc}") from None
    return fraction, slack


def check_estimate(
    estimate: object,
    measured: object,
    *,
    rel: object = None,
    abs: object = None,
    what: str = "graph memory",
) -> EstimateViolation | None:
    """None when ``estimate`` is within ``max(rel * measured, abs)`` of ``measured``.

    ``rel`` is a fraction (``0.05``) or a percentage (``"5%"``); ``abs`` is bytes (an int or
    ``"16 MiB"``). With neither given the estimate must be exact. Both sides are bytes.
    """
    __tracebackhide__ = True
    check_description("assert_estimate", what)
    fraction, slack = _tolerance(rel, abs)
    est, meas = _bytes(estimate, "estimate"), _bytes(measured, "measured")
    allowed = max(fraction * meas, float(slack))
    error = est - meas
    if -allowed <= error <= allowed:
        return None
    sign = "+" if error > 0 else "-"
    abs_error = -error if error < 0 else error
    pct = (
        f"{sign}{-error / meas * 100 if error < 0 else error / meas * 100:.1f}%" if meas else "n/a"
    )
    word = "over" if error > 0 else "under"
    limits = []
    if rel is not None:
        limits.append(f"rel={fraction * 100:g}%")
    if abs is not None:
        limits.append(f"abs={format_size(slack)}")
    message = (
        f"cgmem: {what} estimate {format_size(est)} misses the measured {format_size(meas)} "
        f"by {sign}{format_size(abs_error)} ({pct}, {word}-estimate); "
        f"allowed {' or '.join(limits) or 'an exact match'} = {format_size(allowed)}"
        f" [estimate {est} B, measured {meas} B]"
    )
    return EstimateViolation(what, est, meas, allowed, message)


def _bytes(value: object, name: str) -> int:
    """Bytes from an int, a float (rounded) or a size string; never negative, at most
    ``MAX_FIGURE`` (a float as an int is)."""
    __tracebackhide__ = True
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise CgmemUsageError(f"{name}: expected bytes >= 0, got {value!r}")
        if value > MAX_FIGURE:
            raise CgmemUsageError(f"{name}: too large: the most is {MAX_FIGURE}, got {value!r}")
        return round(value)
    try:
        return parse_size(value)
    except CgmemUsageError as exc:
        raise CgmemUsageError(f"{name}: {exc}") from None


def assert_estimate(
    estimate: object,
    measured: object,
    *,
    rel: object = None,
    abs: object = None,
    what: str = "graph memory",
) -> None:
    """Raise EstimateMismatch when ``estimate`` misses ``measured`` by more than allowed."""
    __tracebackhide__ = True
    violation = check_estimate(estimate, measured, rel=rel, abs=abs, what=what)
    if violation is not None:
        raise EstimateMismatch(violation)
