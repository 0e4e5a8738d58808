"""Figures for other tools: github-action-benchmark entries, pytest-benchmark's
``extra_info`` and JUnit properties (pure).

Every output names a region by its key (``metrics.region_keys``), so an unlabelled region
and a repeated label never share a name with another region of the same test; unknown
figures are left out of each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..metrics import METRICS, names, region_keys, region_label, region_name
from ..units import GiB, KiB, MiB
from .graphfigures import size_text, sizes_of
from .records import RECORDED_SOURCE, RegionResult
from .runfile import known


def gab_entries(
    data: Mapping[str, Any], unit: str = "MiB", *, sizes: bool = False
) -> list[dict[str, Any]]:
    """github-action-benchmark ``customSmallerIsBetter`` entries: one per region and metric.

    Every byte metric is given in one fixed unit (MiB); graph pool bytes only where the
    region made graphs or they were given to ``cgmem_record`` as keywords, 0 included (a
    ``RegionResult`` passed to it exports as the region it was measured from). Device index
    is in the name where a region used several devices.
    Names are unique (the action matches entries by name): a name that would repeat (two
    node ids that print alike) gets `` #2``, `` #3``... in file order. ``extra`` is lines
    separated by ``\\n``, as the action's own extractors write it. An empty list means
    nothing was measured: the action refuses it, so the caller writes no file.

    With ``sizes`` (``--cgmem-gab-sizes``) a region with graph figures (a
    ``cgmem.graphs()`` log, a ``capture_sweep``) adds, per capture size, the bytes its
    captures added to the pool (``<name> size 256 - graph_pool``) and the driver's bytes
    (``<name> size 256 - driver``), each where known.
    """
    scale = {"B": 1, "KiB": KiB, "MiB": MiB, "GiB": GiB}[unit]
    places = {"B": 0, "KiB": 3, "MiB": 6, "GiB": 9}[unit]
    """Decimals that keep about a byte: a leak of 500 bytes is no 0.0 on the dashboard."""
    machine = data.get("machine") or {}
    gpus = ", ".join(machine.get("gpus") or []) or "no GPU"
    partial = (
        [] if data.get("complete", True) else [f"run incomplete: {data.get('incomplete_reason')}"]
    )
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    for test in data["tests"]:
        regions = test["regions"]
        for key, region in zip(region_keys(r.get("label") for r in regions), regions, strict=True):
            if sizes:
                lines = [
                    f"GPU: {gpus}",
                    f"torch: {machine.get('torch')}",
                    f"CUDA: {machine.get('cuda')}",
                    f"outcome: {test.get('outcome')}",
                    *partial,
                ]
                base = region_name(test["nodeid"], key)
                for size, row in sizes_of(region.get("extra")).items():
                    for field, series in (("bytes", "graph_pool"), ("driver", "driver")):
                        value = row.get(field)
                        if value is None:
                            continue
                        found.append(
                            {
                                "name": unique(f"{base} {size_text(size)} - {series}", seen),
                                "unit": unit,
                                "value": round(value / scale, places),
                                "extra": "\n".join([*lines, f"captures: {row.get('captures')}"]),
                            }
                        )
            many = len(region["devices"]) > 1
            recorded = (region.get("extra") or {}).get("recorded") or ()
            for device in region["devices"]:
                name = region_name(test["nodeid"], key, device["index"] if many else None)
                values = known(region, device)
                for metric in names(export=True):
                    value = values.get(metric)
                    if value is None:
                        continue
                    typed_in = metric in recorded and device.get("device_source") == RECORDED_SOURCE
                    graphless = not (value or device.get("graphs") or typed_in)
                    if METRICS[metric].graph and graphless:
                        continue
                    limit = (test.get("budget") or {}).get(metric)
                    lines = [
                        f"GPU: {gpus}",
                        f"torch: {machine.get('torch')}",
                        f"CUDA: {machine.get('cuda')}",
                        f"outcome: {test.get('outcome')}",
                        *partial,
                    ]
                    if limit is not None:
                        lines.append(f"budget: {limit / scale:.{places}f} {unit}")
                    entry_name = unique(f"{name} - {metric}", seen)
                    found.append(
                        {
                            "name": entry_name,
                            "unit": unit,
                            "value": round(value / scale, places),
                            "extra": "\n".join(lines),
                        }
                    )
    return found


def unique(name: str, seen: set[str]) -> str:
    """``name``, or ``name #2``, ``name #3``... : the first not in ``seen`` (then added)."""
    found, number = name, 1
    while found in seen:
        number += 1
        found = f"{name} #{number}"
    seen.add(found)
    return found


def benchmark_figures(regions: Sequence[RegionResult]) -> dict[str, Any]:
    """``{key: {metric: value}}``; ``{key: {"cuda:N": {...}}}`` for a multi-device
    region (pytest-benchmark's ``extra_info["cgmem"]``); unknown figures are left out."""
    found: dict[str, Any] = {}
    for key, region in zip(region_keys(r.label for r in regions), regions, strict=True):
        per_device = {d.where: d.known() for d in region.devices}
        one = len(per_device) == 1
        found[key] = next(iter(per_device.values())) if one else per_device
    return found


def junit_properties(regions: Sequence[RegionResult]) -> list[tuple[str, Any]]:
    """``cgmem.<key>.<metric>`` (``cgmem.<key>.cuda<N>.<metric>`` for a region on
    several devices) for every known figure."""
    found: list[tuple[str, Any]] = []
    if len(regions) == 1:  # most tests: its key is its label, no other region to differ from
        keys: Sequence[str] = (region_label(regions[0].label),)
    else:
        keys = region_keys([r.label for r in regions])
    for key, region in zip(keys, regions, strict=True):
        several = len(region.devices) > 1
        for device in region.devices:
            where = f"{key}.cuda{device.index}" if several else key
            names = _property_names(where)
            for metric, value in device.figures.items():
                if value is not None:
                    name = names.get(metric)
                    if name is None:
                        name = names[metric] = f"cgmem.{where}.{metric}"
                    found.append((name, value))
    return found


_PROPERTY_NAMES: dict[str, dict[str, str]] = {}
"""The property names made so far, by where (``call``, ``load.cuda1``) and metric: every
measured test makes the same few, at each test's end."""


def _property_names(where: str) -> dict[str, str]:
    names = _PROPERTY_NAMES.get(where)
    if names is None:
        if len(_PROPERTY_NAMES) >= 4096:  # labels made per test: keep it bounded
            _PROPERTY_NAMES.clear()
        names = _PROPERTY_NAMES[where] = {}
    return names
