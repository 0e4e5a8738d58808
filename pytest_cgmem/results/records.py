"""The result records (pure): a region's figures per device, and one record per measured test.

``DeviceFigures`` holds one figure per metric of ``METRICS`` (None where unknown), read as
attributes named after the metrics (``figures.peak``), plus what the region saw around
them. ``TestRecord`` is the one record of a measured test: every output (the run file,
the summary, the exports, xdist transport) is made from it, and its verdicts are
computed once, when it is made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from ..checks.budgets import Budget, Violation, check, exceeded
from ..metrics import METRICS, Number
from ..units import CgmemUsageError, short_repr
from .jsonio import valid_text

DISTRIBUTED_LAUNCHER = "cgmem.distributed"
"""``extra["launcher"]`` of the regions of ``cgmem.distributed``'s ranks."""

RECORDED_SOURCE = "recorded"
"""``device_source`` of figures given to ``cgmem_record`` as keywords (a ``RegionResult``
passed to it keeps the source it was measured with)."""


@dataclass(frozen=True)
class Details:
    """What a region saw on a device besides its metrics."""

    allocated_start: int = 0
    reserved_start: int = 0
    allocated_end: int = 0
    reserved_end: int = 0
    device_source: str = "nvml"
    disturbed: bool = False
    ooms: int = 0
    leak_confirmed: bool = False
    gc_freed: int = 0


DETAIL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Details))
_DETAIL_NAMES = frozenset(DETAIL_FIELDS)
_NO_DETAILS = Details()


class MetricAttributes:
    """The metrics (``METRICS``) as attributes, typed for a type checker; a subclass
    serves them through its ``__getattr__`` (None where unknown)."""

    __slots__ = ()

    peak: Number | None
    reserved: Number | None
    leak: Number | None
    device: Number | None
    non_torch: Number | None
    reserved_ratio: Number | None
    graph_pool: Number | None
    graphs: Number | None
    replays: Number | None


class DeviceFigures(MetricAttributes):
    """One region's figures on one CUDA device: ``figures.peak``, ``figures.leak``...

    Build it with keywords: metric names (unknown ones raise TypeError; a metric not
    given is unknown, None, whatever its ``Metric.default``, which only a region that
    measured the device fills in) and the ``Details`` fields.
    """

    __slots__ = ("details", "figures", "index")

    # The details (``Details``), typed for a type checker; read through ``__getattr__``.
    allocated_start: int
    reserved_start: int
    allocated_end: int
    reserved_end: int
    device_source: str
    disturbed: bool
    ooms: int
    leak_confirmed: bool
    gc_freed: int

    def __init__(self, index: int, **values: Any) -> None:
        figures: dict[str, Number | None] = dict.fromkeys(METRICS)
        details: dict[str, Any] = {}
        for key, value in values.items():
            if key in figures:
                figures[key] = value
            elif key in _DETAIL_NAMES:
                details[key] = value
            else:
                unknown = values.keys() - METRICS.keys() - _DETAIL_NAMES
                raise TypeError(f"DeviceFigures: unknown figures {sorted(unknown)}")
        self.index = index
        self.figures: dict[str, Number | None] = figures
        self.details = Details(**details) if details else _NO_DETAILS

    @classmethod
    def of(cls, index: int, figures: dict[str, Number | None], details: Details) -> DeviceFigures:
        """From a figure for each metric of ``METRICS`` (a dict this record keeps) and the
        details: what a region builds for every device it measures, without the keyword
        constructor's per-keyword sorting."""
        if figures.keys() != METRICS.keys():
            unknown = figures.keys() - METRICS.keys()
            missing = METRICS.keys() - figures.keys()
            raise TypeError(
                f"DeviceFigures: unknown figures {sorted(unknown)}, missing {sorted(missing)}"
            )
        made = cls.__new__(cls)
        made.index = index
        made.figures = figures
        made.details = details
        return made

    if not TYPE_CHECKING:  # a type checker sees the names declared, and no other

        def __getattr__(self, name: str) -> Any:
            if name in METRICS:
                return self.figures[name]
            if name in DETAIL_FIELDS:
                return getattr(self.details, name)
            raise AttributeError(name)

    @property
    def where(self) -> str:
        return f"cuda:{self.index}"

    def metrics(self) -> dict[str, Number | None]:
        return dict(self.figures)

    def known(self) -> dict[str, Number]:
        return {m: v for m, v in self.figures.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        """The run-file form: index, every metric, every detail, flat."""
        return {"index": self.index, **self.figures, **vars_of(self.details)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceFigures:
        """Back from the run-file form; keys this version does not know are ignored, and a
        metric the mapping leaves out is unknown (None), as with the keywords."""
        _check_shape(data, "a run file's device (index and figures)", _DEVICE_SHAPE)
        return cls(
            int(data["index"]),
            **{k: v for k, v in data.items() if k in METRICS or k in _DETAIL_NAMES},
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeviceFigures):
            return NotImplemented
        return (self.index, self.figures, self.details) == (
            other.index,
            other.figures,
            other.details,
        )

    def __hash__(self) -> int:
        return hash((self.index, tuple(self.figures.items()), self.details))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.figures.items())
        return f"DeviceFigures(index={self.index}, {shown})"


_NONE = type(None)
_DEVICE_SHAPE: dict[str, tuple[type, ...]] = {"index": (int,)}
_REGION_SHAPE: dict[str, tuple[type, ...]] = {
    "label": (str, _NONE),
    "seconds": (int, float, _NONE),
    "devices": (list, tuple),
    "error": (str, _NONE),
    "extra": (Mapping, _NONE),
}
_OPTIONAL = frozenset({"error", "extra"})
"""Keys ``from_dict`` reads as None where they are missing."""


def _check_shape(data: object, what: str, shape: Mapping[str, tuple[type, ...]]) -> None:
    """Raise CgmemUsageError unless ``data`` is a mapping with ``shape``'s keys (those of
    ``_OPTIONAL`` may be missing) holding values of their types (``_is_a``)."""
    if not isinstance(data, Mapping):
        raise CgmemUsageError(f"expected {what}, got {short_repr(data)}")
    missing = [key for key in shape if key not in data and key not in _OPTIONAL]
    if missing:
        keys = ", ".join(short_repr(key) for key in list(data)[:8])
        more = f" and {len(data) - 8} more" if len(data) > 8 else ""
        got = f"keys {keys}{more}" if data else "no keys"
        raise CgmemUsageError(f"expected {what}, got {got}")
    for key, kinds in shape.items():
        value = data.get(key)
        if not _is_a(value, kinds):
            raise CgmemUsageError(f"expected {what}, got {key}={short_repr(value)}")


def _is_a(value: object, kinds: tuple[type, ...]) -> bool:
    """``isinstance``, but a bool is no number and a whole float is an int, as in JSON Schema."""
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, float) and value.is_integer() and int in kinds:
        return True
    return isinstance(value, kinds)


def vars_of(details: Details) -> dict[str, Any]:
    return {name: getattr(details, name) for name in DETAIL_FIELDS}


@dataclass(frozen=True)
class RegionResult:
    """A finished region: figures per device used, plus what happened inside."""

    label: str | None
    devices: tuple[DeviceFigures, ...]
    seconds: float
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.extra is None:  # no extra, as ``from_dict`` reads a null one
            object.__setattr__(self, "extra", {})

    def metric(self, name: str) -> Number | None:
        """The worst (largest) figure over the devices used; None if no device knows it."""
        if name not in METRICS:
            raise AttributeError(name)
        values = [v for d in self.devices if (v := d.figures[name]) is not None]
        return max(values) if values else None

    def check(self, budget: Budget) -> list[Violation]:
        violations: list[Violation] = []
        for d in self.devices:
            # where, rank and the checks only for a violation; check() refuses a non-Budget
            if not isinstance(budget, Budget) or exceeded(d.figures, budget):
                violations.extend(check(d.figures, budget, d.where, self.label, self.rank))
        return violations

    @property
    def recorded(self) -> bool:
        """Figures given to ``cgmem_record`` rather than measured by a region."""
        return bool(self.extra.get("recorded"))

    @property
    def rank(self) -> int | None:
        """The distributed rank that measured the region (``extra["rank"]``), if any."""
        rank = self.extra.get("rank")
        return rank if isinstance(rank, int) and not isinstance(rank, bool) else None

    @property
    def measured_elsewhere(self) -> bool:
        """Figures this process's allocator did not measure: given to ``cgmem_record``, or a
        rank of ``cgmem.distributed`` (a process of its own)."""
        return self.recorded or self.extra.get("launcher") == DISTRIBUTED_LAUNCHER

    @property
    def judged(self) -> bool:
        """Held against the test's budget when its call phase ends, like a marked test's
        call region: the figures measured elsewhere."""
        return self.measured_elsewhere

    @property
    def ooms(self) -> int:
        return sum(d.details.ooms for d in self.devices)

    @property
    def disturbed(self) -> bool:
        return any(d.details.disturbed for d in self.devices)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "seconds": self.seconds,
            "error": self.error,
            "devices": [d.to_dict() for d in self.devices],
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegionResult:
        what = "a run file's region (label, seconds, devices)"
        _check_shape(data, what, _REGION_SHAPE)
        try:
            seconds = float(data.get("seconds") or 0.0)
        except OverflowError:  # an int beyond any float
            raise CgmemUsageError(
                f"expected {what}, got seconds={short_repr(data.get('seconds'))}"
            ) from None
        return cls(
            data.get("label"),
            tuple(DeviceFigures.from_dict(d) for d in data.get("devices", ())),
            seconds,
            data.get("error"),
            dict(data.get("extra") or {}),
        )

    def labelled(self, label: str | None) -> RegionResult:
        return replace(self, label=label)


@dataclass(frozen=True)
class TestRecord:
    """One measured test: its regions, the budget they were held against, the verdicts.

    ``violations`` and ``baseline`` (the baseline's findings, as run-file data) are
    computed once, when the test's call phase ends.
    """

    __test__ = False  # not a pytest test class

    nodeid: str
    outcome: str
    regions: tuple[RegionResult, ...]
    budget: Mapping[str, Number] = field(default_factory=dict)
    #: labels of the regions held against the budget
    checked: tuple[str | None, ...] = ()
    tolerance: Mapping[str, Number] | None = None
    worker: str | None = None
    cuda_visible_devices: str | None = None
    violations: tuple[Violation, ...] = ()
    baseline: Mapping[str, Any] | None = None
    #: False where its figures are kept and not judged (opted out with ``cgmem_off``, or
    #: recorded in a setup that skipped): no baseline holds them, ``cgmem compare`` neither
    judged: bool = True

    @property
    def peak(self) -> int:
        return max((int(r.metric("peak") or 0) for r in self.regions), default=0)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "nodeid": valid_text(self.nodeid),  # undecodable bytes written out
            "outcome": self.outcome,
            "worker": self.worker,
            "cuda_visible_devices": (
                None if self.cuda_visible_devices is None else valid_text(self.cuda_visible_devices)
            ),  # the environment's undecodable bytes too
            "budget": dict(self.budget),
            "tolerance": None if self.tolerance is None else dict(self.tolerance),
            "checked": list(self.checked),
            "violations": [v.to_dict() for v in self.violations],
            "baseline": None if self.baseline is None else dict(self.baseline),
            "regions": [r.to_dict() for r in self.regions],
        }
        if not self.judged:  # absent where judged: the files of earlier versions
            data["judged"] = False
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestRecord:
        return cls(
            nodeid=data["nodeid"],
            outcome=data["outcome"],
            regions=tuple(RegionResult.from_dict(r) for r in data.get("regions", ())),
            budget=dict(data.get("budget") or {}),
            checked=tuple(data.get("checked") or ()),
            tolerance=data.get("tolerance"),
            worker=data.get("worker"),
            cuda_visible_devices=data.get("cuda_visible_devices"),
            violations=tuple(Violation.from_dict(v) for v in data.get("violations") or ()),
            baseline=data.get("baseline"),
            judged=data.get("judged") is not False,
        )


def judged_violations(
    regions: Sequence[RegionResult], budget: Budget, checked: Sequence[str | None]
) -> tuple[Violation, ...]:
    """The budget violations of the regions whose labels are in ``checked``."""
    return tuple(v for r in regions if r.label in checked for v in r.check(budget))
