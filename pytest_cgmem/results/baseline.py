"""Baselines: figures of a saved run held against a new run, with tolerances (pure)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..metrics import METRICS, Number, in_region, names, region_keys, region_name
from ..units import (
    CgmemUsageError,
    Tolerance,
    format_size,
    parse_percent,
    parse_size,
    short_repr,
)
from .graphfigures import SizeChange, compare_sizes, has_figures, size_changes, size_table, sizes_of
from .jsonio import in_columns, shown_width, valid_text, visible
from .records import RegionResult
from .runfile import figures

Verdict = Literal["regression", "improvement", "same"]
_BARE_FRACTION = re.compile(r"[0-9]+\.[0-9]*|\.[0-9]+")


def parse_tolerance(value: object) -> dict[str, Number]:
    """A per-test tolerance: ``"10%"``, ``"4MiB"``, or both (``"10% 4MiB"``); an int is bytes,
    and so is a whole number without a unit (``"4096"``), but not ``"0.05"`` (5%? 0.05%?).

    Returns ``{"rel": fraction}`` and/or ``{"abs": bytes}``; the other part keeps the
    run's default (``--cgmem-tolerance`` / ``--cgmem-tolerance-abs``).
    """
    usage = f"expected a tolerance such as '10%', '4MiB' or '10% 4MiB', got {short_repr(value)}"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise CgmemUsageError(usage)
    if isinstance(value, int):
        return {"abs": parse_size(value)}
    parts = [p for p in re.split(r"[\s,]+(?=[\d.])", value.strip()) if p.strip()]
    if not parts or len(parts) > 2:
        raise CgmemUsageError(usage)
    result: dict[str, Number] = {}
    for part in parts:
        if _BARE_FRACTION.fullmatch(part.strip()):
            raise CgmemUsageError(
                f"{usage} (expected a percentage such as '5%', got {short_repr(part.strip())})"
            )
        key = "rel" if part.strip().endswith("%") else "abs"
        if key in result:
            kind = "relative" if key == "rel" else "absolute"
            raise CgmemUsageError(f"two {kind} tolerances in {short_repr(value)}")
        try:
            result[key] = parse_percent(part) if key == "rel" else parse_size(part)
        except CgmemUsageError as exc:
            raise CgmemUsageError(f"{usage} ({exc})") from None
    return result


def effective(default: Tolerance, override: Mapping[str, Number] | None) -> Tolerance:
    if not override:
        return default
    return Tolerance(
        rel=float(override.get("rel", default.rel)), abs=int(override.get("abs", default.abs))
    )


def describe(tolerance: Tolerance) -> str:
    return f"tolerance {tolerance.rel * 100:g}% or {format_size(tolerance.abs)}"


@dataclass(frozen=True)
class Change:
    """One figure of one region on one device, baseline against new."""

    nodeid: str
    label: str | None
    index: int
    metric: str
    baseline: Number
    value: Number
    verdict: Verdict
    tolerance: Tolerance = field(default_factory=Tolerance)

    @property
    def change(self) -> Number:
        return self.value - self.baseline

    @property
    def percent(self) -> float | None:
        return None if not self.baseline else self.change / abs(self.baseline) * 100

    def change_text(self) -> str:
        spec = METRICS[self.metric]
        sign = "+" if self.change >= 0 else "-"
        text = sign + spec.format(abs(self.change))
        if self.percent is not None:
            text += f", {self.percent:+.1f}%"
        return text

    @property
    def message(self) -> str:
        spec = METRICS[self.metric]
        word = {"regression": "regressed", "improvement": "improved", "same": "held"}[self.verdict]
        where = f"cuda:{self.index}"
        region = in_region(self.label)
        return (
            f"cgmem: {self.metric} {spec.format(self.value)} {word} from baseline "
            f"{spec.format(self.baseline)} ({self.change_text()}; {describe(self.tolerance)}) "
            f"on {where}{region}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "label": self.label,
            "device": self.index,
            "baseline": self.baseline,
            "value": self.value,
            "change": self.change,
            "message": self.message,
        }


def compare_one(
    key: tuple[str, str, int],
    base: Mapping[str, Number],
    new: Mapping[str, Number],
    tolerance: Tolerance,
    compared: Sequence[str] | None = None,
) -> list[Change]:
    """Every baseline metric that both sides know, with its verdict; ``compared``: those
    metrics' names, where the caller worked them out once for many comparisons."""
    nodeid, label, index = key
    found = []
    for metric in names(baseline=True) if compared is None else compared:
        if base.get(metric) is None or new.get(metric) is None:
            continue
        b, v = base[metric], new[metric]
        moved = tolerance.judge(b, v, absolute=METRICS[metric].kind == "bytes")
        verdict: Verdict = "regression" if moved > 0 else "improvement" if moved < 0 else "same"
        found.append(Change(nodeid, label, index, metric, b, v, verdict, tolerance))
    return found


class _Verdicts:
    """Regressions and improvements among ``changes`` (a field of each subclass)."""

    changes: tuple[Change, ...]

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == "regression"]

    @property
    def improvements(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == "improvement"]


@dataclass(frozen=True)
class Findings(_Verdicts):
    """What a baseline says about one test (or a whole run)."""

    changes: tuple[Change, ...] = ()
    new: tuple[str, ...] = ()
    #: capture sizes of graph regions that vanished or appeared (reported, not failing)
    sizes: tuple[SizeChange, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "compared": len(self.changes),
            "regressions": [c.to_dict() for c in self.regressions],
            "improvements": [c.to_dict() for c in self.improvements],
            "new": list(self.new),
            "sizes": [c.to_dict() for c in self.sizes],
        }


class Baseline:
    """A saved run file, indexed for checking tests one at a time."""

    def __init__(self, path: str, document: Mapping[str, Any]) -> None:
        self.path = path
        self.document = document
        self.figures = figures(document)
        self.nodeids = {t["nodeid"] for t in document["tests"]}
        self.sizes = size_table(document)
        self.compared = names(baseline=True)

    def check(self, nodeid: str, regions: Sequence[RegionResult], tolerance: Tolerance) -> Findings:
        nodeid = valid_text(nodeid)  # as the run file holds it
        changes: list[Change] = []
        new: list[str] = []
        sizes: list[SizeChange] = []
        for name, region in zip(region_keys(r.label for r in regions), regions, strict=True):
            base_sizes = self.sizes.get((nodeid, name))
            if base_sizes is not None and has_figures(region.extra):
                sizes.extend(size_changes(nodeid, name, base_sizes, sizes_of(region.extra)))
            for device in region.devices:
                key = (nodeid, name, device.index)
                base = self.figures.get(key)
                if base is None:
                    many = len(region.devices) > 1
                    new.append(region_name(nodeid, name, device.index if many else None))
                    continue
                values = device.known()
                changes.extend(compare_one(key, base, values, tolerance, self.compared))
        return Findings(tuple(changes), tuple(new), tuple(sizes))


@dataclass(frozen=True)
class Comparison(_Verdicts):
    """Two run files side by side (``cgmem compare``)."""

    changes: tuple[Change, ...]
    new: tuple[str, ...]
    missing: tuple[str, ...]
    #: capture sizes that vanished or appeared in graph regions of both runs
    sizes: tuple[SizeChange, ...] = ()
    #: the graph regions in both runs, ``(nodeid, key)``: their per-size tables
    graph_regions: tuple[tuple[str, str], ...] = ()


def compare_runs(base: Mapping[str, Any], new: Mapping[str, Any], default: Tolerance) -> Comparison:
    """Every figure of ``new`` against ``base``; a test's own ``tolerance`` (from its mark,
    recorded in the new file) replaces the default part by part."""
    unjudged = {t["nodeid"] for t in new["tests"] if t.get("judged") is False}
    if unjudged:  # kept, not judged: compared with nothing, and missing from nothing
        new = {**new, "tests": [t for t in new["tests"] if t["nodeid"] not in unjudged]}
    base_figures = figures(base)
    new_figures = figures(new)
    tolerances = {t["nodeid"]: t.get("tolerance") for t in new["tests"]}
    changes: list[Change] = []
    new_names: list[str] = []
    compared = names(baseline=True)
    new_device_of = _device_naming(new_figures)
    for key, values in new_figures.items():
        if key not in base_figures:
            new_names.append(region_name(key[0], key[1], new_device_of(key)))
            continue
        tolerance = effective(default, tolerances.get(key[0]))
        changes.extend(compare_one(key, base_figures[key], values, tolerance, compared))
    base_device_of = _device_naming(base_figures)
    missing = [
        region_name(k[0], k[1], base_device_of(k))
        for k in base_figures
        if k not in new_figures and k[0] not in unjudged
    ]
    sizes, both = compare_sizes(base, new)
    return Comparison(tuple(changes), tuple(new_names), tuple(missing), tuple(sizes), tuple(both))


def _device_naming(
    table: Mapping[tuple[str, str, int], Any],
) -> Callable[[tuple[str, str, int]], int | None]:
    """A key's device index where its region used several devices (and so names it), else
    None; the regions' device counts are taken once (one count a key made comparing two
    runs of many new tests take quadratic time)."""
    devices = Counter(key[:2] for key in table)
    return lambda key: key[2] if devices[key[:2]] > 1 else None


def change_table(changes: Sequence[Change]) -> list[str]:
    """Text table rows: test, metric, baseline, new, change, verdict."""
    rows = [("test", "metric", "baseline", "new", "change", "verdict")]
    for c in changes:
        spec = METRICS[c.metric]
        name = visible(region_name(c.nodeid, c.label))
        rows.append(
            (
                name,
                c.metric + (f" cuda:{c.index}" if c.index else ""),
                spec.format(c.baseline),
                spec.format(c.value),
                c.change_text(),
                c.verdict.upper() if c.verdict == "regression" else c.verdict,
            )
        )
    widths = [max(shown_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    widths[0] = min(widths[0], 70)
    lines = []
    for row in rows:
        cells = [in_columns(row[0], widths[0])]
        cells.append(row[1].ljust(widths[1]))
        cells += [row[i].rjust(widths[i]) for i in range(2, len(row))]
        lines.append("  ".join(cells).rstrip())
    return lines
