"""The ranks of ``cgmem.distributed`` (pure): its arguments, what each rank sent back, the
failure text, and the ``DistributedResult`` a test gets.

The processes themselves are started, watched and stopped by ``cuda/distributed.py``; this
module only turns what they did into records and words.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from numbers import Real
from typing import TYPE_CHECKING, Any

from ..checks.budgets import parse_budget
from ..failures import BudgetExceeded, RankFailed
from ..metrics import METRICS, Number, names, rank_label
from ..units import CgmemUsageError, as_float, as_whole, short_repr
from .records import DISTRIBUTED_LAUNCHER, DeviceFigures, MetricAttributes, RegionResult

DEFAULT_TIMEOUT = 300.0
"""Seconds a ``cgmem.distributed`` call may take, start-up and measuring included."""
START_METHODS = ("forkserver", "spawn")
"""How rank processes start: ``forkserver`` (the default, torch imported once by the
server) or ``spawn`` (a fresh interpreter per rank). ``fork`` is refused: CUDA breaks in a
child forked from a process that started it."""
MOST_RANKS = 1024
"""The most ranks one call starts: each is a process on this host (a larger number is a
typo, and would start processes until the host runs out)."""
_WHERE = "cgmem.distributed"
_DETAIL_LINES = 30


@dataclass(frozen=True)
class Launch:
    """The checked arguments of one ``cgmem.distributed`` call."""

    world_size: int
    backend: str
    timeout: float
    label: str | None = None
    start_method: str = START_METHODS[0]

    @property
    def needs_cuda(self) -> bool:
        """Whether the backend runs on CUDA devices only (NCCL, alone or in a mix)."""
        return "nccl" in self.backend.lower()


def launch_arguments(
    fn: object,
    world_size: object,
    backend: object,
    timeout: object,
    label: object = None,
    start_method: object = START_METHODS[0],
) -> Launch:
    """Check the arguments; a bad one is a one-line CgmemUsageError saying what to give."""
    __tracebackhide__ = True
    if not callable(fn):
        raise CgmemUsageError(
            f"{_WHERE}: fn must be a function fn(rank, world_size), got {short_repr(fn)}"
        )
    ranks = as_whole(world_size)
    if ranks is None or not 1 <= ranks <= MOST_RANKS:
        raise CgmemUsageError(
            f"{_WHERE}: world_size must be a whole number from 1 to {MOST_RANKS}, "
            f"got {short_repr(world_size)}"
        )
    if not isinstance(backend, str) or not backend.strip():
        raise CgmemUsageError(
            f"{_WHERE}: backend must be a torch.distributed backend name such as 'nccl' or "
            f"'gloo', got {short_repr(backend)}"
        )
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, Real)
        or not math.isfinite(as_float(timeout))
        or timeout <= 0
    ):
        raise CgmemUsageError(
            f"{_WHERE}: timeout must be a number of seconds > 0, got {short_repr(timeout)}"
        )
    if label is not None and (not isinstance(label, str) or not label or "/" in label):
        raise CgmemUsageError(
            f"{_WHERE}: label must be a non-empty string without '/', got {short_repr(label)}"
        )
    if not isinstance(start_method, str) or start_method not in START_METHODS:
        raise CgmemUsageError(
            f"{_WHERE}: start_method must be one of {', '.join(START_METHODS)}, "
            f"got {short_repr(start_method)}"
        )
    return Launch(ranks, backend.strip(), as_float(timeout), label, str(start_method))


def not_picklable(fn: object, problem: BaseException) -> CgmemUsageError:
    """The usage error for a function a rank process cannot receive."""
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return CgmemUsageError(
        f"{_WHERE}: fn must be picklable, i.e. a function defined at the top level of an "
        f"importable module; {name!r} is not ({type(problem).__name__}: "
        f"{str(problem).splitlines()[0] if str(problem) else 'cannot pickle'})"
    )


def exit_status(exitcode: int | None) -> str:
    """A process's exit status in words: ``exit status 3``, ``exit status -9 (SIGKILL)``
    (multiprocessing's negative status: the signal that ended it), ``still running``."""
    if exitcode is None:
        return "still running"
    if exitcode >= 0:
        return f"exit status {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        return f"exit status {exitcode}"
    return f"exit status {exitcode} ({name})"


OK, RAISED, EXITED, TIMEOUT, LINGERED, STOPPED = (
    "ok",
    "raised",
    "exited",
    "timeout",
    "lingered",
    "stopped",
)
FAILED = (RAISED, EXITED, TIMEOUT, LINGERED)


@dataclass(frozen=True)
class RankOutcome:
    """What one rank did.

    ``status``: ``ok`` (sent its figures and exited), ``raised`` (``fn`` or the rank's set-up
    raised; ``detail`` is its traceback), ``exited`` (ended before sending anything),
    ``timeout`` (still running at the deadline), ``lingered`` (sent its figures but did not
    exit by the deadline), ``stopped`` (still running when another rank failed).
    """

    rank: int
    status: str
    exitcode: int | None = None
    region: RegionResult | None = None
    error: str | None = None
    detail: str = ""
    value: Any = None
    device: int | None = None
    seconds: float = 0.0
    #: when it failed (``time.time()``): the rank's own clock for an exception, the moment
    #: the test's process saw it end otherwise
    at: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status in FAILED


def rank_region(
    launch: Launch,
    rank: int,
    region: RegionResult | None,
    seconds: float,
    error: str | None,
    unmeasured: str | None,
) -> RegionResult:
    """The region a rank adds to its test: its measured region (or, where it sent none, an
    empty one whose ``error`` says why), labelled ``rankN`` and tagged with its rank."""
    extra: dict[str, Any] = {} if region is None else dict(region.extra)
    extra.update(
        rank=rank,
        world_size=launch.world_size,
        backend=launch.backend,
        launcher=DISTRIBUTED_LAUNCHER,
    )
    if unmeasured is not None:
        extra["unmeasured"] = unmeasured
    label = rank_label(rank, launch.label)
    if region is None:
        return RegionResult(label, (), seconds, error, extra)
    return replace(region, label=label, error=region.error or error, extra=extra)


def _indented(text: str) -> list[str]:
    lines = text.rstrip().splitlines()
    if len(lines) > _DETAIL_LINES:
        lines = [f"... ({len(lines) - _DETAIL_LINES} lines above)", *lines[-_DETAIL_LINES:]]
    return ["    " + line for line in lines]


def _ranks(ranks: Sequence[int]) -> str:
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(str(r) for r in ranks)


def cause(outcomes: Sequence[RankOutcome]) -> list[RankOutcome]:
    """The failed ranks, the likeliest cause first: a rank that ended without a word (a
    crash, ``os._exit``) before one that raised (its peers' errors follow its end), then
    the earliest."""
    return sorted(
        (o for o in outcomes if o.failed), key=lambda o: (o.status != EXITED, o.at, o.rank)
    )


def failure(outcomes: Sequence[RankOutcome], launch: Launch) -> RankFailed | None:
    """The failure of a run where a rank failed (None where every rank is ``ok``).

    The likeliest cause comes first (``cause``); every failed rank gets its line and its
    traceback or last output; ranks that were stopped because of it are named last.
    """
    failed = cause(outcomes)
    if not failed:
        return None
    n, seconds = launch.world_size, f"{launch.timeout:g} s"
    lines: list[str] = []
    for o in failed:
        where = f"rank {o.rank} of {n}" + (f" (cuda:{o.device})" if o.device is not None else "")
        if o.status == RAISED:
            lines.append(f"cgmem: {where} raised {o.error}")
        elif o.status == EXITED:
            lines.append(
                f"cgmem: {where} exited before sending its figures: {exit_status(o.exitcode)}"
            )
        elif o.status == TIMEOUT:
            lines.append(
                f"cgmem: {where} did not finish within the timeout of {seconds}; "
                f"stopped: {exit_status(o.exitcode)}"
            )
        else:
            lines.append(
                f"cgmem: {where} sent its figures but did not exit within the timeout of "
                f"{seconds}; stopped: {exit_status(o.exitcode)}"
            )
        if o.detail:
            lines.extend(_indented(o.detail))
    stopped = [o.rank for o in outcomes if o.status == STOPPED]
    if stopped:
        lines.append(
            f"cgmem: stopped {_ranks(stopped)} (still running when rank {failed[0].rank} failed)"
        )
    head = failed[0]
    return RankFailed("\n".join(lines), head.rank, head.status, head.exitcode, outcomes)


class RankResult:
    """One rank's figures: ``rank.peak``, ``rank.leak``, ``rank.non_torch`` (None where
    unknown: a rank with no CUDA device measures nothing), ``rank.value`` (what ``fn``
    returned), ``rank.region`` (its ``RegionResult``)."""

    # The metrics (``METRICS``) but ``device``, the rank's CUDA index here, typed for a
    # type checker; read through ``__getattr__``.
    peak: Number | None
    reserved: Number | None
    leak: Number | None
    non_torch: Number | None
    reserved_ratio: Number | None
    graph_pool: Number | None
    graphs: Number | None
    replays: Number | None

    def __init__(self, rank: int, region: RegionResult, value: Any = None) -> None:
        self.rank = rank
        self.region = region
        self.value = value

    if not TYPE_CHECKING:  # a type checker sees the metrics declared, and no other name

        def __getattr__(self, name: str) -> Any:
            if name in METRICS:
                return self.region.metric(name)
            raise AttributeError(name)

    @property
    def measured(self) -> bool:
        return bool(self.region.devices)

    @property
    def device(self) -> int | None:
        """The rank's own CUDA device (rank r on ``cuda:r``); None where not measured."""
        figures = self.figures
        return None if figures is None else figures.index

    @property
    def figures(self) -> DeviceFigures | None:
        """The figures on the rank's own device (the first it reported)."""
        return self.region.devices[0] if self.region.devices else None

    def __repr__(self) -> str:
        if not self.measured:
            why = self.region.extra.get("unmeasured") or self.region.error or "no figures"
            return f"<RankResult rank {self.rank}: not measured ({why})>"
        shown = ", ".join(
            f"{m}={METRICS[m].format(self.region.metric(m))}"
            for m in names(summary=True, graph=False)
        )
        return f"<RankResult rank {self.rank} cuda:{self.device} {shown}>"


class DistributedResult(MetricAttributes):
    """What ``cgmem.distributed`` returns: every rank's figures.

    ``result.per_rank[1].leak`` is rank 1's; ``result.leak`` the largest over the ranks
    (None where no rank measured it); ``result.values`` what ``fn`` returned on each rank;
    ``result.check(leak=0)`` holds every rank against the budgets. Where no CUDA device
    could be measured (``measured`` False, ``unmeasured`` says why) every figure is None
    and ``check`` finds nothing over budget: there was nothing to measure.
    """

    def __init__(self, launch: Launch, per_rank: Mapping[int, RankResult]) -> None:
        self.world_size = launch.world_size
        self.backend = launch.backend
        self.label = launch.label
        self.per_rank: dict[int, RankResult] = dict(sorted(per_rank.items()))

    if not TYPE_CHECKING:  # a type checker sees the metrics declared, and no other name

        def __getattr__(self, name: str) -> Any:
            if name in METRICS:
                values = [
                    v for r in self.per_rank.values() if (v := r.region.metric(name)) is not None
                ]
                return max(values) if values else None
            raise AttributeError(name)

    @property
    def measured(self) -> bool:
        return all(r.measured for r in self.per_rank.values())

    @property
    def unmeasured(self) -> str | None:
        """Why the ranks measured nothing (e.g. ``no CUDA device``), or None."""
        for r in self.per_rank.values():
            why = r.region.extra.get("unmeasured")
            if why:
                return str(why)
        return None

    @property
    def values(self) -> list[Any]:
        return [r.value for r in self.per_rank.values()]

    @property
    def regions(self) -> tuple[RegionResult, ...]:
        return tuple(r.region for r in self.per_rank.values())

    def check(self, **budgets: object) -> None:
        """Raise BudgetExceeded (an AssertionError) listing every figure over its budget on
        every rank, each naming its rank and device."""
        __tracebackhide__ = True
        if not budgets:
            raise CgmemUsageError(
                "cgmem.distributed: check() needs at least one budget, "
                "e.g. check(peak='1 GiB', leak=0)"
            )
        budget = parse_budget(budgets)
        violations = [v for region in self.regions for v in region.check(budget)]
        if violations:
            raise BudgetExceeded(violations)

    def __repr__(self) -> str:
        ranks = ", ".join(repr(r) for r in self.per_rank.values())
        return f"<DistributedResult world_size={self.world_size} {self.backend}: {ranks}>"


def result(
    launch: Launch,
    outcomes: Sequence[RankOutcome],
    regions: Mapping[int, RegionResult],
) -> DistributedResult:
    """The test's result from every rank's outcome and region (all ranks ``ok``)."""
    return DistributedResult(
        launch, {o.rank: RankResult(o.rank, regions[o.rank], o.value) for o in outcomes}
    )
