"""Graph figures in the run file (pure): a ``cgmem.graphs()`` log or a ``capture_sweep``
as a region's ``extra["graph_figures"]``, and what the outputs read back from it.

A log's or a sweep's region carries, besides its device figures (``graph_pool``,
``graphs``, ``replays`` on the devices captured on; every other metric unknown), the graph
figures: the captures (a count), the replays, each pool's bytes per device, and per
capture size the bytes its captures added to the pool and the driver's bytes. A sweep's
sizes are its sizes; a log's are its captures' labels (captures without one are counted,
not sized). Built from ``GraphLog.to_dict()`` and ``SweepResult.to_dict()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..metrics import METRICS, region_keys, region_name
from ..units import format_size
from .records import DeviceFigures, RegionResult

EXTRA_KEY = "graph_figures"
"""The key of a region's ``extra`` that holds its graph figures."""
LOG_LABEL = "graphs"
"""A ``cgmem.graphs()`` log's region label unless the test names another."""
SWEEP_LABEL = "capture_sweep"
"""A ``cgmem.capture_sweep()``'s region label unless the test names another."""

Size = int | str


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


def _size_of(label: object) -> Size | None:
    """A capture's label as a size: an int (not a bool) or a non-empty string, else None."""
    if isinstance(label, bool) or label is None:
        return None
    if isinstance(label, int):
        return label
    text = str(label)
    return text or None


def _sized(entries: Sequence[tuple[Size, int | None, int | None]]) -> list[dict[str, Any]]:
    """Per size in first-seen order: bytes and driver summed (None when one is unknown),
    and how many captures had that size."""
    table: dict[Size, dict[str, Any]] = {}
    for size, reserved, driver in entries:
        row = table.get(size)
        if row is None:
            table[size] = {"size": size, "bytes": reserved, "driver": driver, "captures": 1}
        else:
            row["bytes"] = _add(row["bytes"], reserved)
            row["driver"] = _add(row["driver"], driver)
            row["captures"] += 1
    return list(table.values())


def from_log(log: Mapping[str, Any]) -> dict[str, Any]:
    """A ``GraphLog.to_dict()`` as graph figures."""
    captures = log.get("captures") or []
    sized = [
        (size, c.get("reserved"), c.get("driver"))
        for c in captures
        if (size := _size_of(c.get("label"))) is not None
    ]
    return {
        "source": LOG_LABEL,
        "captures": len(captures),
        "replays": int(log.get("replays") or 0),
        "pools": [
            {"device": p["device"], "pool": p["pool"], "bytes": p.get("bytes")}
            for p in log.get("pools") or []
        ],
        "sizes": _sized(sized),
        "mechanism": log.get("mechanism"),
        "pools_unavailable": log.get("pools_unavailable"),
    }


def from_sweep(sweep: Mapping[str, Any], device: int | None) -> dict[str, Any]:
    """A ``SweepResult.to_dict()`` (captured on ``device``) as graph figures."""
    per_size = sweep.get("per_size") or []
    pool = sweep.get("pool")
    pools = (
        [] if pool is None else [{"device": device, "pool": pool, "bytes": sweep.get("pool_bytes")}]
    )
    return {
        "source": SWEEP_LABEL,
        "captures": len(per_size),
        "replays": 0,
        "pools": pools,
        "sizes": _sized([(e["size"], e.get("bytes"), e.get("driver")) for e in per_size]),
        "driver_total": sweep.get("driver_total"),
    }


GRAPH_SOURCE = "graphs"
"""``device_source`` of a log's or a sweep's device figures: only the graph metrics are
known there."""


def graph_device(
    index: int, graph_pool: int | None, graphs: int | None, replays: int | None
) -> DeviceFigures:
    """A log's or a sweep's figures on one device: ``graph_pool``, ``graphs`` and
    ``replays``; every other metric unknown (None), so no output shows or compares it."""
    unknown: dict[str, Any] = {m: None for m in METRICS}
    unknown.update(graph_pool=graph_pool, graphs=graphs, replays=replays)
    return DeviceFigures(index, device_source=GRAPH_SOURCE, **unknown)


def error_line(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}".splitlines()[0]


def region(
    label: str,
    devices: Sequence[DeviceFigures],
    seconds: float,
    figures: Mapping[str, Any],
    error: BaseException | None = None,
) -> RegionResult:
    """The region a log or a sweep adds to its test."""
    return RegionResult(
        label, tuple(devices), float(seconds), error_line(error), {EXTRA_KEY: dict(figures)}
    )


# reading them back -------------------------------------------------------------------------
def sizes_of(extra: Mapping[str, Any] | None) -> dict[Size, dict[str, Any]]:
    """``{size: {"bytes", "driver", "captures"}}`` of a region's graph figures; {} for a
    region without any."""
    found = (extra or {}).get(EXTRA_KEY)
    if not isinstance(found, Mapping):
        return {}
    return {row["size"]: row for row in found.get("sizes") or [] if "size" in row}


def has_figures(extra: Mapping[str, Any] | None) -> bool:
    return isinstance((extra or {}).get(EXTRA_KEY), Mapping)


def size_table(data: Mapping[str, Any]) -> dict[tuple[str, str], dict[Size, dict[str, Any]]]:
    """``(nodeid, region key) -> {size: figures}`` for every region of a run document
    that carries graph figures (a region without sizes maps to {})."""
    found: dict[tuple[str, str], dict[Size, dict[str, Any]]] = {}
    for test in data["tests"]:
        regions = test["regions"]
        for key, region in zip(region_keys(r.get("label") for r in regions), regions, strict=True):
            if has_figures(region.get("extra")):
                found[(test["nodeid"], key)] = sizes_of(region.get("extra"))
    return found


def size_text(size: Size) -> str:
    return f"size {size}"


def _order(sizes: Sequence[Size]) -> list[Size]:
    """Ints by value, then strings by text."""
    ints = sorted(s for s in sizes if isinstance(s, int))
    texts = sorted(s for s in sizes if isinstance(s, str))
    return [*ints, *texts]


@dataclass(frozen=True)
class SizeChange:
    """A capture size that a region of the baseline had and the new run lacks, or the
    other way round. Reported, never a regression by itself."""

    nodeid: str
    label: str
    size: Size
    change: Literal["vanished", "appeared"]
    bytes: int | None

    @property
    def name(self) -> str:
        return f"{region_name(self.nodeid, self.label)} {size_text(self.size)}"

    @property
    def message(self) -> str:
        held = "" if self.bytes is None else f" ({format_size(self.bytes)})"
        if self.change == "vanished":
            return f"cgmem: capture {size_text(self.size)}{held} vanished from {self.label!r}"
        return f"cgmem: capture {size_text(self.size)}{held} appeared in {self.label!r}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "size": self.size,
            "change": self.change,
            "bytes": self.bytes,
            "message": self.message,
        }


def size_changes(
    nodeid: str,
    label: str,
    base: Mapping[Size, Mapping[str, Any]],
    new: Mapping[Size, Mapping[str, Any]],
) -> list[SizeChange]:
    """The sizes of one region that vanished (in ``base`` only) or appeared (``new`` only)."""
    found = [
        SizeChange(nodeid, label, s, "vanished", base[s].get("bytes"))
        for s in _order([s for s in base if s not in new])
    ]
    found += [
        SizeChange(nodeid, label, s, "appeared", new[s].get("bytes"))
        for s in _order([s for s in new if s not in base])
    ]
    return found


def compare_sizes(
    base: Mapping[str, Any], new: Mapping[str, Any]
) -> tuple[list[SizeChange], list[tuple[str, str]]]:
    """Every size change between two run documents, over the regions with graph figures
    in both; and those regions, ``(nodeid, key)``, in the new document's order."""
    base_table = size_table(base)
    new_table = size_table(new)
    both = [k for k in new_table if k in base_table]
    changes = [c for k in both for c in size_changes(*k, base_table[k], new_table[k])]
    return changes, both


def size_rows(
    base: Mapping[Size, Mapping[str, Any]], new: Mapping[Size, Mapping[str, Any]]
) -> list[tuple[Size, int | None, int | None]]:
    """``(size, baseline bytes, new bytes)`` over both sides' sizes; None where a side
    lacks the size or its bytes are unknown."""
    return [
        (s, (base.get(s) or {}).get("bytes"), (new.get(s) or {}).get("bytes"))
        for s in _order(list({**base, **new}))
    ]


def size_series(
    runs: Sequence[Mapping[str, Any]],
) -> dict[tuple[str, str], list[dict[Size, int | None]]]:
    """Per region with sizes in any run: one ``{size: bytes}`` per run, in order ({} for
    a run that lacks the region)."""
    tables = [size_table(doc) for doc in runs]
    keys: dict[tuple[str, str], None] = {}
    for table in tables:
        for key, sizes in table.items():
            if sizes:
                keys.setdefault(key, None)
    return {
        key: [
            {s: row.get("bytes") for s, row in (table.get(key) or {}).items()} for table in tables
        ]
        for key in keys
    }


def ordered(sizes: Sequence[Size]) -> list[Size]:
    """Sizes in chart and table order: ints by value, then strings."""
    return _order(sizes)


def size_table_lines(rows: Sequence[tuple[Size, int | None, int | None]]) -> list[str]:
    """Text rows for ``size_rows``: size, baseline, new, change (``vanished``,
    ``appeared``, a signed size, or ``-`` where a figure is unknown)."""
    table = [("size", "baseline", "new", "change")]
    for size, before, after in rows:
        change = "-"
        if before is None and after is None:
            change = "-"
        elif after is None and before is not None:
            change = "vanished"
        elif before is None and after is not None:
            change = "appeared"
        elif before is not None and after is not None:
            delta = after - before
            change = ("+" if delta >= 0 else "-") + format_size(abs(delta))
        table.append((str(size), _shown(before), _shown(after), change))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    return ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]


def _shown(value: int | None) -> str:
    return "-" if value is None else format_size(value)
