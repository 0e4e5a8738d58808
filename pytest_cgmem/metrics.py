"""The metrics: one table, and every list of metrics in the package derives from it (pure).

A metric's name is its budget keyword, its run-file key and its report column. Where it
appears is said here once:

- ``baseline``: held against a baseline (smaller is better, a growth is a regression);
- ``summary``: a column of the terminal summary (``graph`` ones only when a region
  captured or replayed a graph);
- ``export``: a series in the github-action-benchmark file and in the HTML report's
  history charts;
- ``chart``: a bar in the HTML report's per-test figures chart.

Budgets, the report section, JUnit properties and pytest-benchmark's ``extra_info`` show
every metric.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .units import format_size, parse_count, parse_ratio, parse_size

Kind = Literal["bytes", "count", "ratio"]
Number = int | float

CALL_LABEL = "call"
"""The label of the region a ``cgmem`` mark measures: the test's call phase."""
UNLABELLED = "region"
"""How an unlabelled region (``cgmem.measure()`` with no label) is named in outputs."""


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    doc: str
    baseline: bool = True
    summary: bool = False
    export: bool = False
    chart: bool = False
    graph: bool = False
    #: the figure where a region did not produce one (None: unknown)
    default: Number | None = None
    #: a figure may be negative (memory the region gave back); a budget never is
    signed: bool = False
    #: counted from an emptied cache: a region that keeps the cache it found
    #: (``--cgmem-all``'s, unless its budget names the metric) cannot give it
    from_empty_cache: bool = False

    def parse(self, value: object) -> Number:
        """A budget: a limit, never negative; a ratio above 0."""
        if self.kind == "bytes":
            return parse_size(value)
        if self.kind == "count":
            return parse_count(value)
        return parse_ratio(value)

    def parse_figure(self, value: object) -> Number:
        """A figure measured elsewhere (``cgmem_record``): as a budget, but a signed
        metric's figure may be negative, and a ratio may be 0, as a region's may."""
        if self.kind == "bytes":
            return parse_size(value, signed=self.signed)
        if self.kind == "count":
            return parse_count(value)
        return parse_ratio(value, zero=True)

    def format(self, value: Number | None) -> str:
        if value is None:
            return "n/a"
        if self.kind == "bytes":
            return format_size(value)
        if self.kind == "count":
            return str(int(value))
        return f"{value:.2f}"


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "peak",
            "bytes",
            "peak allocated bytes above allocated at the region's start",
            summary=True,
            export=True,
            chart=True,
        ),
        Metric(
            "reserved",
            "bytes",
            "peak reserved bytes above reserved at the start",
            summary=True,
            export=True,
            chart=True,
            from_empty_cache=True,
        ),
        Metric(
            "leak",
            "bytes",
            "allocated bytes left at the end above the start",
            summary=True,
            export=True,
        ),
        Metric(
            "device",
            "bytes",
            "this process's device memory growth as the driver sees it",
            summary=True,
            export=True,
            chart=True,
            signed=True,
            from_empty_cache=True,
        ),
        Metric(
            "non_torch",
            "bytes",
            "device growth minus the growth of torch's reserved bytes",
            summary=True,
            export=True,
            signed=True,
        ),
        Metric(
            "reserved_ratio",
            "ratio",
            "peak reserved / peak allocated inside the region",
            baseline=False,
            from_empty_cache=True,
        ),
        Metric(
            "graph_pool",
            "bytes",
            "bytes held by CUDA graph pools made in the region",
            summary=True,
            export=True,
            graph=True,
            default=0,
        ),
        Metric(
            "graphs",
            "count",
            "CUDA graph captures in the region",
            summary=True,
            graph=True,
            default=0,
        ),
        Metric(
            "replays",
            "count",
            "CUDA graph replays in the region",
            baseline=False,
            summary=True,
            graph=True,
            default=0,
        ),
    )
}

_KIND_HINT: dict[Kind, str] = {
    "bytes": "bytes: int or '1.5 GiB'",
    "count": "whole number",
    "ratio": "positive number",
}


def names(**where: bool) -> tuple[str, ...]:
    """Metric names in table order whose flags match, e.g. ``names(baseline=True)``."""
    return tuple(
        m.name for m in METRICS.values() if all(getattr(m, k) == v for k, v in where.items())
    )


def metric_help() -> str:
    """One line per budget keyword, for ``pytest --markers`` and docs."""
    return "; ".join(f"{m.name} ({_KIND_HINT[m.kind]}): {m.doc}" for m in METRICS.values())


def region_keys(labels: Iterable[str | None]) -> tuple[str, ...]:
    """A key for each region of one test, in order, unique within the test.

    A region's key is its label (``region`` for an unlabelled one); the second region
    with the same key is ``key#2``, the third ``key#3``, skipping any number that another
    region's own label already takes. The keys depend only on the labels and their order,
    so a run file's regions get the same keys in every reader.
    """
    bases = [region_label(label) for label in labels]
    taken = set(bases)
    keys: list[str] = []
    for base in bases:
        key, number = base, 1
        while key in keys or (number > 1 and key in taken):
            number += 1
            key = f"{base}#{number}"
        keys.append(key)
    return tuple(keys)


def region_name(nodeid: str, key: str | None, device: int | None = None) -> str:
    """How a region is named in every output: the node id, `` [key]`` unless it is the
    call phase, and `` cuda:N`` when the region used several devices (``device`` given).

    ``key`` is the region's key (``region_keys``); None is an unlabelled region.
    """
    key = region_label(key)
    name = nodeid if key == CALL_LABEL else f"{nodeid} [{key}]"
    return name if device is None else f"{name} cuda:{device}"


def region_label(label: str | None) -> str:
    """A region's label in keyed outputs; ``region`` for an unlabelled one."""
    return label or UNLABELLED


def rank_label(rank: int, label: str | None = None) -> str:
    """The label of a distributed rank's region: ``rank1`` for its main region (a
    ``cgmem.distributed`` rank, a torchrun rank's call phase), ``rank1/load`` for one it
    labelled ``load``."""
    return f"rank{rank}" if not label or label == CALL_LABEL else f"rank{rank}/{label}"


def unranked_label(rank: int, label: str | None) -> str | None:
    """``label`` without the ``rankN`` naming of ``rank_label`` (None for the main region)."""
    if label == f"rank{rank}":
        return None
    prefix = f"rank{rank}/"
    return label[len(prefix) :] if label is not None and label.startswith(prefix) else label


def in_region(label: str | None) -> str:
    """`` in 'prefill'``: how a message names its region; nothing for the call phase."""
    return f" in {label!r}" if label and label != CALL_LABEL else ""
