"""Figures for other tools: github-action-benchmark entries, pytest-benchmark's
``extra_info`` and JUnit properties (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..metrics import METRICS, names, region_label, region_name
from .records import RegionResult
from .runfile import known


def gab_entries(data: Mapping[str, Any], unit: str = "MiB") -> list[dict[str, Any]]:
    """github-action-benchmark ``customSmallerIsBetter`` entries: one per region and metric.

    Every byte metric is given in one fixed unit (MiB); graph pool bytes only where the
    region made graphs. Device index is in the name where a region used several devices.
    """
    scale = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[unit]
    machine = data.get("machine") or {}
    gpus = ", ".join(machine.get("gpus") or []) or "no GPU"
    found: list[dict[str, Any]] = []
    for test in data["tests"]:
        for region in test["regions"]:
            many = len(region["devices"]) > 1
            for device in region["devices"]:
                name = region_name(
                    test["nodeid"], region.get("label"), device["index"] if many else None
                )
                values = known(region, device)
                for metric in names(export=True):
                    value = values.get(metric)
                    if value is None:
                        continue
                    if METRICS[metric].graph and not (value or device.get("graphs")):
                        continue
                    limit = (test.get("budget") or {}).get(metric)
                    extra = (
                        f"GPU: {gpus}; torch {machine.get('torch')}; CUDA {machine.get('cuda')}; "
                        f"outcome {test.get('outcome')}"
                    )
                    if limit is not None:
                        extra += f"; budget {limit / scale:.3f} {unit}"
                    found.append(
                        {
                            "name": f"{name} - {metric}",
                            "unit": unit,
                            "value": round(value / scale, 3),
                            "extra": extra,
                        }
                    )
    return found


def benchmark_figures(regions: Sequence[RegionResult]) -> dict[str, Any]:
    """``{label: {metric: value}}``; ``{label: {"cuda:N": {...}}}`` for a multi-device
    region (pytest-benchmark's ``extra_info["cgmem"]``); unknown figures are left out."""
    found: dict[str, Any] = {}
    for region in regions:
        per_device = {d.where: d.known() for d in region.devices}
        one = len(per_device) == 1
        found[region_label(region.label)] = next(iter(per_device.values())) if one else per_device
    return found


def junit_properties(regions: Sequence[RegionResult]) -> list[tuple[str, Any]]:
    """``cgmem.<label>.<metric>`` (``cgmem.<label>.cuda<N>.<metric>`` for a region on
    several devices) for every known figure."""
    found: list[tuple[str, Any]] = []
    for region in regions:
        label = region_label(region.label)
        for device in region.devices:
            where = f"{label}.cuda{device.index}" if len(region.devices) > 1 else label
            found.extend((f"cgmem.{where}.{m}", v) for m, v in device.known().items())
    return found
