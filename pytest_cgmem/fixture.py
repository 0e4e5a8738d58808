"""The objects behind the ``cgmem`` and ``cgmem_record`` fixtures.

``CgmemFixture`` imports the ``cuda`` package (and so torch) only when a method is used;
``FigureRecorder`` never does. Neither knows pytest's hooks: each is given the function
that adds a finished region to its test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager, suppress
from numbers import Real
from typing import TYPE_CHECKING, Any

from .checks.budgets import parse_budget
from .checks.graph_sizes import (
    assert_all_captured,
    assert_estimate,
    assert_sizes_covered,
    uncovered_sizes,
)
from .failures import BudgetExceeded, FigureUnavailable, ResizeCheckFailed, SteadyStateFailed
from .metrics import METRICS, Number, names
from .results.graphfigures import LOG_LABEL, SWEEP_LABEL
from .results.ranks import DEFAULT_TIMEOUT, START_METHODS, DistributedResult, launch_arguments
from .results.records import RECORDED_SOURCE, Details, DeviceFigures, RegionResult
from .units import MAX_FIGURE, CgmemUsageError, as_float, as_whole, parse_size, short_repr

if TYPE_CHECKING:
    from .checks.resize import SteadyFigures, StepFigures
    from .cuda.graphs import GraphLog, SweepResult


def _whole_at_least(where: str, name: str, value: object, least: int) -> int:
    """``value`` as an int (numpy's and torch's integers too), or a usage error."""
    __tracebackhide__ = True
    whole = as_whole(value)
    if whole is None or whole < least:
        raise CgmemUsageError(
            f"{where}: {name} must be a whole number >= {least}, got {short_repr(value)}"
        )
    return whole


def _size_argument(where: str, name: str, value: object) -> None:
    __tracebackhide__ = True
    try:
        parse_size(value)
    except CgmemUsageError as exc:
        raise CgmemUsageError(f"{where}: {name}={short_repr(value)}: {exc}") from None


def _callable(where: str, name: str, value: object) -> None:
    __tracebackhide__ = True
    if not callable(value):
        raise CgmemUsageError(f"{where}: {name} must be callable, got {short_repr(value)}")


def _region_label(where: str, region: object, name: str = "region") -> None:
    __tracebackhide__ = True
    if not isinstance(region, str) or not region or not region.isprintable():
        raise CgmemUsageError(
            f"{where}: {name} must be a non-empty printable string (no newline or tab), "
            f"got {short_repr(region)}"
        )


class Measurement:
    """A region's figures; the attributes are the metric names (``m.peak``, ``m.leak``...).

    With several devices an attribute is the largest figure over them; ``per_device``
    has each. Figures are read once the ``with`` block has closed.
    """

    # The metrics (``METRICS``), typed for a type checker; read through ``__getattr__``.
    peak: int | None  # None: no device the region watched was used (``devices=``)
    reserved: int | None
    leak: int | None  # None: the region ended by an exception
    device: int | None
    non_torch: int | None
    reserved_ratio: float | None
    graph_pool: int | None
    graphs: int | None
    replays: int | None

    def __init__(self, label: str | None) -> None:
        self.label = label
        self.result: RegionResult | None = None

    def _finished(self) -> RegionResult:
        if self.result is None:
            raise RuntimeError(
                f"cgmem: measurement {self.label or ''!r} is still running; "
                "read its figures after the with block"
            )
        return self.result

    if not TYPE_CHECKING:  # a type checker sees the metrics above, and no other name

        def __getattr__(self, name: str) -> Any:
            if name in METRICS:
                return self._finished().metric(name)
            raise AttributeError(name)

    @property
    def per_device(self) -> dict[int, DeviceFigures]:
        return {d.index: d for d in self._finished().devices}

    def check(self, **budgets: object) -> None:
        """Raise BudgetExceeded (an AssertionError) listing every metric over its budget.

        A leak budget on a region that ended by an exception raises FigureUnavailable: such
        a region measures no leak (its traceback holds the tensors of the code that
        raised), and an unknown figure would otherwise pass."""
        __tracebackhide__ = True
        if not budgets:
            raise CgmemUsageError(
                "cgmem.measure: check() needs at least one budget, e.g. check(peak='1 GiB', leak=0)"
            )
        budget = parse_budget(budgets)
        result = self._finished()
        if result.error and "leak" in budget.limits and result.metric("leak") is None:
            raise FigureUnavailable(
                f"cgmem: measurement {self.label or ''!r} has no leak figure: it ended by "
                f"{result.error}, whose traceback holds the tensors of the code that "
                "raised; check the leak of a block that runs to its end"
            )
        violations = result.check(budget)
        if violations:
            raise BudgetExceeded(violations)

    def __repr__(self) -> str:
        if self.result is None:
            return f"<Measurement {self.label!r} running>"
        figures = ", ".join(
            f"{name}={METRICS[name].format(self.result.metric(name))}"
            for name in names(summary=True, graph=False)
        )
        return f"<Measurement {self.label!r} {figures}>"


class DistributedRunner:
    """``cgmem_distributed(fn, world_size=2, backend="nccl", timeout=300)`` (and
    ``cgmem.distributed``): run ``fn(rank, world_size)`` on ``world_size`` ranks, each a
    process on its own device (rank r on ``cuda:r``) in an initialised process group, each
    measuring a region around ``fn``; returns a ``DistributedResult``.

    ``fn`` must be picklable: a function at the top level of an importable module (a test
    module is one), not a lambda or a nested function. Each rank's region is added to the
    test (labelled ``rank0``, ``rank1``... or ``rank1/<label>``) and held against its budget
    like a marked test's call phase. A rank that raises, exits or is still running after
    ``timeout`` seconds fails the test (RankFailed) naming the rank and its exit status; the
    other ranks are stopped. See docs/distributed.md.
    """

    def __init__(
        self,
        record: Callable[[RegionResult], None],
        require_devices: Callable[[int], None] | None = None,
    ) -> None:
        self._record = record
        self._require_devices = require_devices

    def __call__(
        self,
        fn: Callable[[int, int], Any],
        world_size: int = 2,
        backend: str = "nccl",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        label: str | None = None,
        start_method: str = START_METHODS[0],
    ) -> DistributedResult:
        __tracebackhide__ = True
        launch = launch_arguments(fn, world_size, backend, timeout, label, start_method)
        if label is not None:
            _region_label("cgmem.distributed", label, "label")
        from .cuda.distributed import check_call, check_launch, run

        check_launch(launch)
        payload = check_call(fn, launch)
        if launch.needs_cuda and self._require_devices is not None:
            self._require_devices(launch.world_size)
        return run(fn, launch, self._record, payload)


class CgmemFixture:
    """What a test gets from the ``cgmem`` fixture.

    Its ``device`` and ``rank`` arguments: in a torchrun rank, its device (``LOCAL_RANK``)
    and rank, the default of every region measured here.
    """

    def __init__(
        self,
        record: Callable[[RegionResult], None],
        *,
        device: int | None = None,
        rank: int | None = None,
        require_devices: Callable[[int], None] | None = None,
    ) -> None:
        self._record = record
        self._device = device
        self._rank = rank
        self._distributed = DistributedRunner(record, require_devices)

    @contextmanager
    def measure(
        self, label: str | None = None, *, devices: Sequence[int] | None = None
    ) -> Iterator[Measurement]:
        """Measure the body; regions nest, and each device used gets its own figures."""
        if label is not None:
            _region_label("cgmem.measure", label, "label")
        if devices is not None:
            given = devices
            indices = (
                [as_whole(d) for d in given]
                if isinstance(given, Iterable) and not isinstance(given, (str, bytes))
                else []
            )
            devices = tuple(d for d in indices if d is not None and 0 <= d <= MAX_FIGURE)
            if not devices or len(devices) != len(indices):
                raise CgmemUsageError(
                    "cgmem.measure: devices must be device indices such as [0, 1], "
                    f"got {short_repr(given)}"
                )
        from .cuda.region import Region

        measurement = Measurement(label)
        region = Region(label, devices, device=self._device, rank=self._rank).start()
        try:
            yield measurement
        except BaseException as exc:
            measurement.result = region.stop(exc)
            self._record(measurement.result)
            raise
        measurement.result = region.stop()
        self._record(measurement.result)

    def distributed(
        self,
        fn: Callable[[int, int], Any],
        world_size: int = 2,
        backend: str = "nccl",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        label: str | None = None,
        start_method: str = START_METHODS[0],
    ) -> DistributedResult:
        """Run ``fn(rank, world_size)`` on ``world_size`` ranks, rank r on ``cuda:r``, each
        measured; see ``DistributedRunner`` and docs/distributed.md."""
        __tracebackhide__ = True
        return self._distributed(
            fn, world_size, backend, timeout=timeout, label=label, start_method=start_method
        )

    # CUDA graphs (pytest_cgmem.cuda.graphs, imported on first use) ----------------------
    @contextmanager
    def graphs(
        self, label: Callable[[], object] | None = None, *, region: str = LOG_LABEL
    ) -> Iterator[GraphLog]:
        """Log every CUDA graph captured and replayed in the body, whoever captures it.

        ``label`` (a callable, read at each capture) or ``log.label(size)`` names captures.
        On exit ``log.held_at_exit`` lists the pools still holding memory. The log is a
        region of the test, labelled ``region`` (``graphs``): its graph figures reach the
        run file and every output (docs/graphs.md).
        """
        from .cuda.graphs import GraphLog

        _region_label("graphs", region)
        log = GraphLog(label).start()
        try:
            yield log
        except BaseException as exc:
            log.stop(measure_pools=False)
            with suppress(Exception):  # the test's own error matters more
                self._record(log.region(region, exc))
            raise
        log.stop()
        self._record(log.region(region))

    def capture_sweep(
        self,
        fn: Callable[..., Any],
        sizes: Iterable[int],
        make_input: Callable[[int], Any],
        warmup: int = 2,
        pool: object = None,
        *,
        region: str = SWEEP_LABEL,
    ) -> SweepResult:
        """Capture ``fn`` at every size, largest first, into one shared pool. The sweep is
        a region of the test, labelled ``region`` (``capture_sweep``), with its per-size
        figures (docs/graphs.md)."""
        __tracebackhide__ = True
        from .cuda.graphs import capture_sweep

        _region_label("capture_sweep", region)
        result = capture_sweep(fn, sizes, make_input, warmup=warmup, pool=pool)
        self._record(result.region(region))
        return result

    def expect_replay(
        self, what: str | None = None, *, at_least: int = 1
    ) -> ContextManager[GraphLog]:
        """Fail (EagerFallback) unless a CUDA graph replay happens in the body."""
        from .cuda.graphs import expect_replay

        return expect_replay(what, at_least=at_least)

    def pool_bytes(self, pool: object, *, release_workspaces: bool = True) -> int:
        """Bytes a graph pool's segments still hold, after emptying the cache."""
        __tracebackhide__ = True
        from .cuda.graphs import pool_bytes

        return pool_bytes(pool, release_workspaces=release_workspaces)

    def assert_pool_released(self, *pools: object, release_workspaces: bool = True) -> None:
        """Fail (PoolNotReleased) naming every pool that still holds device memory."""
        __tracebackhide__ = True
        from .cuda.graphs import assert_pools_released

        assert_pools_released(*pools, release_workspaces=release_workspaces)

    assert_estimate = staticmethod(assert_estimate)
    assert_sizes_covered = staticmethod(assert_sizes_covered)
    assert_all_captured = staticmethod(assert_all_captured)
    uncovered_sizes = staticmethod(uncovered_sizes)

    def resize_check(
        self,
        resize: Callable[[Any], object],
        sizes: Sequence[Any],
        slack: int | str | None = None,
        *,
        retain: int | str = 0,
        label: str = "resize_check",
    ) -> list[StepFigures]:
        """Call ``resize(n)`` for each size; fail on cached-but-unused or retained bytes.

        After each step, the reserved-but-unused bytes that appeared during the check must
        stay within ``slack`` (default: the allocator's rounding for the live blocks, see
        docs/resize.md), and no block allocated by an earlier step may still be allocated
        once a step allocates new memory (beyond ``retain`` bytes: what you keep on
        purpose). Raises ResizeCheckFailed (an AssertionError).
        """
        __tracebackhide__ = True
        where = "cgmem.resize_check"
        _callable(where, "resize", resize)
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Iterable):
            raise CgmemUsageError(f"{where}: sizes must be a sequence, got {short_repr(sizes)}")
        sizes = list(sizes)
        if not sizes:  # a check of no step would pass having checked nothing
            raise CgmemUsageError(f"{where}: no sizes given")
        if slack is not None:
            _size_argument(where, "slack", slack)
        _size_argument(where, "retain", retain)
        _region_label(where, label, "label")
        from .cuda.resize import run_resize_check

        steps, violations = run_resize_check(resize, sizes, slack, self._record, label, retain)
        if violations:
            raise ResizeCheckFailed(violations)
        return steps

    def steady(
        self,
        fn: Callable[[], object],
        warmup: int = 1,
        repeat: int = 3,
        *,
        label: str = "steady",
    ) -> list[SteadyFigures]:
        """After ``warmup`` calls, ``repeat`` more must not grow reserved bytes, segments
        or allocated bytes. Raises SteadyStateFailed (an AssertionError) naming the metric
        and its growth per call; returns the figures after warm-up and after each call.
        """
        __tracebackhide__ = True
        _callable("cgmem.steady", "fn", fn)
        warmup = _whole_at_least("cgmem.steady", "warmup", warmup, 0)
        repeat = _whole_at_least("cgmem.steady", "repeat", repeat, 1)
        _region_label("cgmem.steady", label, "label")
        from .cuda.resize import run_steady

        base, after, violations = run_steady(fn, warmup, repeat, self._record, label)
        if violations:
            raise SteadyStateFailed(violations)
        return [base, *after]


_RECORDED = Details(device_source=RECORDED_SOURCE)


def _recording(label: str) -> str:
    """How a refusal of ``cgmem_record`` names the call (made only for a refusal)."""
    return f"cgmem_record({short_repr(label)})"


class FigureRecorder:
    """``cgmem_record("load", peak="1.2 GiB", reserved=..., device_index=0)``.

    Each keyword is a metric name with a value as in a budget (an int is bytes, a string
    has a unit). Metrics that are not given are unknown (None, left out of every export);
    the names given are kept in the region's ``extra["recorded"]``. A ``RegionResult``
    (e.g. read back from a subprocess's run file) may be passed instead of keywords.
    Recorded regions are held against the test's budget at the end of its call phase,
    like a marked test's ``call`` region.
    """

    def __init__(self, add: Callable[[RegionResult], None], rank: int | None = None) -> None:
        self._add = add
        self._rank = rank

    def __call__(
        self,
        label: str | RegionResult,
        *,
        device_index: int = 0,
        seconds: float = 0.0,
        **figures: object,
    ) -> RegionResult:
        __tracebackhide__ = True
        if isinstance(label, RegionResult):
            if figures:
                raise CgmemUsageError("cgmem_record: give a RegionResult or figures, not both")
            if not (device_index == 0 and seconds == 0):
                raise CgmemUsageError(
                    "cgmem_record: a RegionResult brings its own devices and seconds; "
                    "device_index and seconds go with figures"
                )
            if not isinstance(label.devices, (tuple, list)) or not all(
                isinstance(d, DeviceFigures) for d in label.devices
            ):
                raise CgmemUsageError(
                    "cgmem_record: the RegionResult's devices must be DeviceFigures, got "
                    f"{short_repr(label.devices)}"
                )
            if not isinstance(label.extra, Mapping):
                raise CgmemUsageError(
                    "cgmem_record: the RegionResult's extra must be a mapping, got "
                    f"{short_repr(label.extra)}"
                )
            from .results.runfile import plain_region, region_problem

            if label.label is not None:
                _region_label("cgmem_record", label.label, "the RegionResult's label")
            problem = region_problem(plain_region(label))
            if problem:
                raise CgmemUsageError(
                    f"cgmem_record: the RegionResult cannot be recorded: {problem}"
                )
            if not label.devices:
                named = "" if label.label is None else f" {short_repr(label.label)}"
                raise CgmemUsageError(
                    f"cgmem_record: the RegionResult{named} holds no device's figures "
                    "(its devices are empty)"
                )
            given = {m for d in label.devices for m in d.known()}
            result = RegionResult(
                label.label,
                label.devices,
                label.seconds,
                label.error,
                {**self._ranked, **label.extra, "recorded": sorted(given or METRICS)},
            )
            self._add(result)
            return result
        _region_label("cgmem_record", label, "label")
        if not figures:
            raise CgmemUsageError(
                f"{_recording(label)}: give at least one figure, e.g. peak='1 GiB'"
            )
        values: dict[str, Number | None] = dict.fromkeys(METRICS)
        for name, value in figures.items():
            metric = METRICS.get(name)
            if metric is None:
                raise CgmemUsageError(
                    f"{_recording(label)}: unknown figure {short_repr(name)} "
                    f"(valid: {', '.join(METRICS)})"
                )
            try:
                values[name] = metric.parse_figure(value)
            except CgmemUsageError as exc:
                raise CgmemUsageError(
                    f"{_recording(label)}: {name}={short_repr(value)}: {exc}"
                ) from None
        index = as_whole(device_index)
        if index is None or not 0 <= index <= MAX_FIGURE:
            raise CgmemUsageError(  # the run file holds no whole number beyond MAX_FIGURE
                f"{_recording(label)}: device_index must be an int from 0 to {MAX_FIGURE}, "
                f"got {short_repr(device_index)}"
            )
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, Real)
            or not math.isfinite(as_float(seconds))
            or seconds < 0
        ):
            raise CgmemUsageError(
                f"{_recording(label)}: seconds must be a finite number >= 0, "
                f"got {short_repr(seconds)}"
            )
        device = DeviceFigures.of(index, values, _RECORDED)
        extra = {**self._ranked, "recorded": sorted(figures)}
        result = RegionResult(label, (device,), as_float(seconds), None, extra)
        self._add(result)
        return result

    @property
    def _ranked(self) -> dict[str, int]:
        return {} if self._rank is None else {"rank": self._rank}
