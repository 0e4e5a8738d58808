"""The result record of a measured region (pure): what measure.py produces and reports read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .budgets import METRICS, Budget, Number, Violation, check


@dataclass(frozen=True)
class DeviceFigures:
    """One region's figures on one CUDA device; metric fields are named as the budgets."""

    index: int
    peak: int
    reserved: int
    leak: int
    device: int | None
    non_torch: int | None
    reserved_ratio: float | None
    graph_pool: int = 0
    graphs: int = 0
    replays: int = 0
    allocated_start: int = 0
    reserved_start: int = 0
    allocated_end: int = 0
    reserved_end: int = 0
    device_source: str = "nvml"
    disturbed: bool = False
    ooms: int = 0
    leak_confirmed: bool = False
    gc_freed: int = 0

    @property
    def where(self) -> str:
        return f"cuda:{self.index}"

    def metrics(self) -> dict[str, Number | None]:
        return {name: getattr(self, name) for name in METRICS}


@dataclass(frozen=True)
class RegionResult:
    """A finished region: figures per device used, plus what happened inside."""

    label: str | None
    devices: tuple[DeviceFigures, ...]
    seconds: float
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> Number | None:
        """The worst (largest) figure over the devices used; None if no device knows it."""
        if name not in METRICS:
            raise AttributeError(name)
        values = [v for d in self.devices if (v := getattr(d, name)) is not None]
        return max(values) if values else None

    def check(self, budget: Budget) -> list[Violation]:
        return [v for d in self.devices for v in check(d.metrics(), budget, d.where, self.label)]

    @property
    def ooms(self) -> int:
        return sum(d.ooms for d in self.devices)

    @property
    def disturbed(self) -> bool:
        return any(d.disturbed for d in self.devices)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "seconds": self.seconds,
            "error": self.error,
            "devices": [asdict(d) for d in self.devices],
            "extra": dict(self.extra),
        }
