"""Figures measured elsewhere, recorded as a test's region (pure; needs no CUDA).

What the ``cgmem_record`` fixture gives a test: for figures that a subprocess, a server
under test or another tool measured, so that they reach the JSON, the baseline check,
the summary and the HTML report like the plugin's own regions.
"""

from __future__ import annotations

from collections.abc import Callable

from .budgets import METRICS
from .results import DeviceFigures, RegionResult
from .units import CgmemUsageError

_OPTIONAL = ("device", "non_torch", "reserved_ratio")


class FigureRecorder:
    """``cgmem_record("load", peak="1.2 GiB", reserved=..., device_index=0)``.

    Each keyword is a metric name with a value as in a budget (an int is bytes, a string
    has a unit). Byte and count metrics that are not given are recorded as 0; ``device``,
    ``non_torch`` and ``reserved_ratio`` as unknown; the names given are kept in the
    region's ``extra["recorded"]``. A ``RegionResult`` (e.g. read back from a subprocess's
    run file) may be passed instead of keywords. Recorded regions are held against the
    test's budget at the end of its call phase, like a marked test's ``call`` region.
    """

    def __init__(self, add: Callable[[RegionResult], None]) -> None:
        self._add = add

    def __call__(
        self,
        label: str | RegionResult,
        *,
        device_index: int = 0,
        seconds: float = 0.0,
        **figures: object,
    ) -> RegionResult:
        if isinstance(label, RegionResult):
            if figures:
                raise CgmemUsageError("cgmem_record: give a RegionResult or figures, not both")
            result = RegionResult(
                label.label,
                label.devices,
                label.seconds,
                label.error,
                {**label.extra, "recorded": sorted(METRICS)},
            )
            self._add(result)
            return result
        if not isinstance(label, str) or not label:
            raise CgmemUsageError(f"cgmem_record: a label must be a non-empty string: {label!r}")
        where = f"cgmem_record({label!r})"
        if not figures:
            raise CgmemUsageError(f"{where}: give at least one figure, e.g. peak='1 GiB'")
        values: dict[str, object] = {}
        for name, value in figures.items():
            metric = METRICS.get(name)
            if metric is None:
                raise CgmemUsageError(
                    f"{where}: unknown figure {name!r} (valid: {', '.join(METRICS)})"
                )
            try:
                values[name] = metric.parse(value)
            except CgmemUsageError as exc:
                raise CgmemUsageError(f"{where}: {name}={value!r}: {exc}") from None
        if isinstance(device_index, bool) or not isinstance(device_index, int) or device_index < 0:
            raise CgmemUsageError(f"{where}: device_index must be an int >= 0")
        for name in METRICS:
            values.setdefault(name, None if name in _OPTIONAL else 0)
        device = DeviceFigures(index=device_index, device_source="recorded", **values)  # type: ignore[arg-type]
        result = RegionResult(label, (device,), float(seconds), None, {"recorded": sorted(figures)})
        self._add(result)
        return result
