"""Budgets and the check that turns figures into violations (pure)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

from ..metrics import METRICS, Number, in_region, unranked_label
from ..units import CgmemUsageError, short_repr


@dataclass(frozen=True)
class Budget:
    """Limits by metric name; a metric absent from ``limits`` is not checked."""

    limits: Mapping[str, Number] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """A Budget made directly holds what ``parse_budget`` would: known metrics, each
        with a number it takes (bytes as an int). A string or a NaN here would only fail
        later, from inside a comparison."""
        limits = self.limits
        if not isinstance(limits, Mapping):
            raise CgmemUsageError(
                f"Budget: limits must map metric names to numbers, got {short_repr(limits)}"
            )
        for key, value in limits.items():
            metric = METRICS.get(key)
            if metric is None:
                raise CgmemUsageError(
                    f"Budget: unknown metric {short_repr(key)} (valid: {', '.join(METRICS)})"
                )
            try:
                taken = not isinstance(value, str) and metric.parse(value) == value
            except CgmemUsageError:
                taken = False
            if not taken:
                raise CgmemUsageError(
                    f"Budget: {key}={short_repr(value)}: give the number parse_budget would "
                    "(it reads the mark's values, such as '1 GiB')"
                )

    def merged(self, override: Budget) -> Budget:
        """This budget with ``override``'s keys replacing its own, key by key."""
        return Budget({**self.limits, **override.limits})

    def __bool__(self) -> bool:
        return bool(self.limits)

    @property
    def needs_empty_cache(self) -> bool:
        """Whether it limits a figure counted from an emptied cache: a region held to it
        must empty the cache at its start."""
        return any(METRICS[name].from_empty_cache for name in self.limits)


def parse_budget(values: Mapping[str, object], also_valid: tuple[str, ...] = ()) -> Budget:
    """A Budget from keyword values; raises CgmemUsageError naming the keyword and value.

    ``also_valid`` are keywords the caller takes itself (the mark's ``tolerance``), listed
    among the valid ones when a keyword is unknown.
    """
    __tracebackhide__ = True
    if not isinstance(values, Mapping):
        raise CgmemUsageError(
            "parse_budget: expected budget keywords and values such as {'peak': '1 GiB'}, "
            f"got {short_repr(values)}"
        )
    limits: dict[str, Number] = {}
    for key, value in values.items():
        metric = METRICS.get(key)
        if metric is None:
            valid = ", ".join((*METRICS, *also_valid))
            raise CgmemUsageError(f"unknown budget keyword {short_repr(key)} (valid: {valid})")
        try:
            limits[key] = metric.parse(value)
        except CgmemUsageError as exc:
            raise CgmemUsageError(f"{key}={short_repr(value)}: {exc}") from None
    return Budget(limits)


_ITEM_START = re.compile(r"[\s,]+(?=[A-Za-z_]\w*\s*=)")


def split_assignments(text: str) -> dict[str, str]:
    """``"peak=4GiB reserved=6 GiB"`` -> ``{"peak": "4GiB", "reserved": "6 GiB"}``.

    Items are separated by spaces or commas; a value may itself contain a space.
    """
    result: dict[str, str] = {}
    for item in _ITEM_START.split(text.strip()):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip().rstrip(",").strip()
        if not sep or not key.isidentifier() or not value:
            raise CgmemUsageError(
                f"cannot read {short_repr(item)}: expected key=value, e.g. peak=4GiB"
            )
        if key in result:
            raise CgmemUsageError(f"{short_repr(key)} given twice in {short_repr(text)}")
        result[key] = value
    return result


def parse_budget_string(text: object) -> Budget:
    """A Budget from the option/ini form ``"peak=4GiB reserved=6GiB"``."""
    if not str(text).strip():
        raise CgmemUsageError(
            "expected budgets such as 'peak=4GiB reserved=6GiB', got an empty value"
        )
    return parse_budget(split_assignments(str(text)))


@dataclass(frozen=True)
class Violation:
    """One metric over its budget on one device (of one distributed rank, where ``rank``)."""

    metric: str
    limit: Number
    actual: Number
    where: str
    label: str | None = None
    rank: int | None = None

    @property
    def message(self) -> str:
        spec = METRICS[self.metric]
        actual, limit = spec.format(self.actual), spec.format(self.limit)
        close = self.limit and abs(self.actual - self.limit) / self.limit < 0.0005
        if spec.kind == "bytes" and (actual == limit or close):
            actual, limit = f"{int(self.actual)} B", f"{int(self.limit)} B"
        if self.limit:
            over = f"(+{(self.actual - self.limit) / self.limit * 100:.1f}%)"
        else:
            over = f"(over by {spec.format(self.actual - self.limit)})"
        where, label = self.where, self.label
        if self.rank is not None:
            where, label = f"rank {self.rank} ({where})", unranked_label(self.rank, label)
        region = in_region(label)
        return f"cgmem: {self.metric} {actual} exceeds budget {limit} {over} on {where}{region}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "metric": self.metric,
            "limit": self.limit,
            "actual": self.actual,
            "where": self.where,
            "label": self.label,
        }
        if self.rank is not None:
            data["rank"] = self.rank
        data["message"] = self.message
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Violation:
        return cls(
            data["metric"],
            data["limit"],
            data["actual"],
            data["where"],
            data.get("label"),
            data.get("rank"),
        )


def check(
    figures: Mapping[str, Number | None],
    budget: Budget,
    where: str,
    label: str | None = None,
    rank: int | None = None,
) -> list[Violation]:
    """Violations of ``budget`` by one device's ``figures``; unknown figures never violate."""
    if not isinstance(figures, Mapping):
        raise CgmemUsageError(
            f"check: figures must map metric names to numbers, got {short_repr(figures)}"
        )
    if not isinstance(budget, Budget):
        raise CgmemUsageError(
            "check: budget must be a Budget (parse_budget({'peak': '1 GiB'}) makes one), "
            f"got {short_repr(budget)}"
        )
    for name, value in figures.items():
        if name not in METRICS:  # a misspelt figure would never be over its budget
            raise CgmemUsageError(
                f"check: unknown figure {short_repr(name)} (valid: {', '.join(METRICS)})"
            )
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value)
        ):
            raise CgmemUsageError(
                f"check: figure {short_repr(name)} must be a finite number or None, "
                f"got {short_repr(value)}"
            )
    return [
        Violation(name, limit, actual, where, label, rank)
        for name, limit, actual in exceeded(figures, budget)
    ]


def exceeded(
    figures: Mapping[str, Number | None], budget: Budget
) -> list[tuple[str, Number, Number]]:
    """(metric, limit, figure) of each known figure over its limit, unchecked arguments:
    what ``check`` reports, for a caller that names the device only where one is over."""
    over = []
    for name, limit in budget.limits.items():
        actual = figures.get(name)
        if actual is not None and actual > limit:
            over.append((name, limit, actual))
    return over


@dataclass(frozen=True)
class Unavailable:
    """A budget on a figure the allocator cannot give (e.g. graph_pool under
    cudaMallocAsync): never held as passed, since there is no figure to hold."""

    metric: str
    limit: Number
    where: str
    reason: str
    label: str | None = None

    @property
    def message(self) -> str:
        region = in_region(self.label)
        return (
            f"cgmem: {self.metric} budget {METRICS[self.metric].format(self.limit)} cannot be "
            f"checked on {self.where}{region}: {self.reason}; measure it under an allocator "
            "that gives it, or pass --cgmem-unavailable=skip to skip budgets on unavailable "
            "figures"
        )

    @property
    def skipped_message(self) -> str:
        """The warning when such budgets are skipped (``--cgmem-unavailable=skip``)."""
        region = in_region(self.label)
        return (
            f"cgmem: {self.metric} budget {METRICS[self.metric].format(self.limit)} not "
            f"checked on {self.where}{region} (--cgmem-unavailable=skip): {self.reason}"
        )


def unavailable_budgets(
    figures: Mapping[str, Number | None],
    budget: Budget,
    unavailable: Mapping[str, str],
    where: str,
    label: str | None = None,
) -> list[Unavailable]:
    """The budgets on figures that were unavailable (None, with a reason) on one device."""
    return [
        Unavailable(name, limit, where, unavailable[name], label)
        for name, limit in budget.limits.items()
        if name in unavailable and figures.get(name) is None
    ]
