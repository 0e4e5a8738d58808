"""A measured region: figures of one stretch of GPU work on every device it used.

Reads the allocator through ``allocator`` and the driver through ``nvml``; tracks CUDA
graphs through ``graphs``. Imported lazily by the plugin, only when a test asks for GPU
memory figures.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import torch

from ..metrics import METRICS, names
from ..results.records import Details, DeviceFigures, RegionResult
from ..units import CgmemUsageError, MiB
from . import allocator, count_measurement
from .allocator import current
from .graphs import GraphLog
from .nvml import nvml

_DISTURBANCE_SLACK = 2 * MiB
IDLE_AT_START = "n/a: the device held no memory of this process at the region's start"
"""The ``device_source`` of a device the region began to use: its driver figure is unknown."""
CACHE_KEPT = (
    "the region kept torch's cache as the test found it (--cgmem-all); name the metric "
    "in --cgmem-budget to measure it from an emptied cache"
)

_NO_FIGURES: dict[str, Any] = {name: metric.default for name, metric in METRICS.items()}
"""Each metric's default: a device's figures start as a copy of it."""
_warmed: set[int] = set()
_active: list[Region] = []
_clean: dict[int, tuple[int, int]] = {}
"""Per device: (allocated bytes, current stream) when the cuBLAS workspaces were last known
to be exactly the current stream's. While allocated bytes and the stream are unchanged at
a region's start, no workspace can have been made or dropped since, and the reset is
skipped."""


def _warm_handles(index: int) -> None:
    """Create the cuBLAS handle and the cuBLAS and cuBLASLt workspaces of device
    ``index``'s current stream (the current device), in the plugin's own pool.

    The handle and the cuBLAS workspace come without a kernel (torch 2.4+ sets the
    workspace whenever it hands out the handle); the cuBLASLt workspace needs one GEMM
    through cuBLASLt, made in float32 (the dtype most suites run first, so its kernels
    are usually loaded already). Its operands are freed right after. Made in the default
    pool, the workspaces would split a block of the cache the code under test warmed (a
    fixture's warmed cache then no longer held the body's first large tensor) and move
    where its tensors land.
    """
    with allocator.own_pool(index):
        single = torch.ones(8, 8, device="cuda")  # ones, not empty: loads the fill kernels
        torch._C._cuda_getCurrentBlasHandle()  # after a tensor: cuBLAS warns without a context
        torch.nn.functional.linear(single, single, single[0])
        del single


def _stream_id(index: int) -> int:
    """The id of device ``index``'s current stream (torch's cheapest reading of it)."""
    return int(torch._C._cuda_getCurrentStream(index)[0])


def _reset_workspaces(devices: Sequence[int]) -> None:
    """Leave exactly the current streams' cuBLAS/cuBLASLt workspaces allocated.

    A workspace made earlier for another stream would otherwise sit in the region's
    baseline and hide a leak of up to its size when the leak check clears it. Dropping
    them all (as PyTorch's own leak check does) and recreating the current stream's one
    reuses the cached block: no cudaMalloc, two tiny kernels.
    """
    allocator.clear_cublas_workspaces()
    for index in devices:
        with torch.cuda.device(index):
            _warm_handles(index)
            _clean[index] = (allocator.allocated_reserved(index)[0], _stream_id(index))


def warm_up(index: int) -> None:
    """Once per process and device: CUDA context, cuBLAS/cuBLASLt handles, NVML.

    Done before the first region so that the first test is not charged for it.
    """
    if index in _warmed:
        return
    with torch.cuda.device(index):
        _warm_handles(index)
        allocator.synchronize(index)
    nvml().handle(index, allocator.device_uuid(index))
    _warmed.add(index)


@dataclass
class _Start:
    allocated: int
    reserved: int
    ooms: int
    processes: dict[int, int] | None
    used_total: int | None
    peak_allocated: int = 0
    peak_reserved: int = 0
    late: bool = False
    workspace: bool = False
    """Whether the start figure holds the current stream's cuBLAS workspaces (every device
    the process used at the start does; one idle then, or a late start, holds none)."""


@dataclass
class Region:
    """One measured stretch of GPU work. ``start()`` then ``stop()``; never reused.

    ``devices``: the devices watched (default: every device); ``device``: the region's own
    device, warmed up and always reported (default: the current device; a distributed
    rank's is its own, whatever the current device); ``rank``: the distributed rank
    measuring, kept in the result's ``extra`` so that failures name it.
    ``linger_tracking``: leave the graph tracking installed at the stop for the next
    region to take up, as installing it costs more than the rest of the tracking; the
    caller removes it (``graphs.release_tracking()``) before code no region measures.
    ``keep_cache``: leave torch's cache as the code left it, at the start and in the leak
    check, so that the code sees the cache it would see unmeasured (``--cgmem-all``'s
    regions); the figures counted from an emptied cache (``from_empty_cache`` metrics)
    are then unavailable.
    """

    label: str | None = None
    devices: Sequence[int] | None = None
    device: int | None = None
    rank: int | None = None
    _starts: dict[int, _Start] = field(default_factory=dict)
    _t0: float = 0.0
    _open: bool = False
    probes: list[Callable[[int], dict[str, Any]]] = field(default_factory=list)
    before_leak_check: list[Callable[[int], None]] = field(default_factory=list)
    track_graphs: bool = True
    trackers: list[GraphLog] = field(default_factory=list)
    linger_tracking: bool = False
    keep_cache: bool = False

    def _fold_peaks(self, index: int, stats: dict[str, Any]) -> None:
        start = self._starts.get(index)
        if start is not None:
            start.peak_allocated = max(
                start.peak_allocated, current(stats, "allocated_bytes", "peak")
            )
            start.peak_reserved = max(start.peak_reserved, current(stats, "reserved_bytes", "peak"))

    def _cache_kept(self, start: _Start) -> bool:
        """Whether the start's figures held a cache the region kept: a late start's did
        not (nothing was reserved before CUDA started), so its reserved figures stand."""
        return self.keep_cache and not start.late

    def _watched(self) -> list[int]:
        watched = (
            list(self.devices)
            if self.devices is not None
            else list(range(allocator.device_count()))
        )
        if self.device is not None and self.device not in watched:
            watched.append(self.device)
        return watched

    def allocated_at_start(self, index: int) -> int:
        """Allocated bytes on device ``index`` when the region started."""
        return self._starts[index].allocated

    def _home(self) -> int:
        """The region's own device: ``device`` where given, else the current device."""
        if self.device is None:
            return allocator.current_device()
        count = allocator.device_count()
        if not 0 <= self.device < count:
            raise RuntimeError(
                f"cgmem: the region's device cuda:{self.device} does not exist "
                f"({count} CUDA device(s) visible)"
            )
        return self.device

    def start(self) -> Region:
        """Wait for the devices, make the workspaces known, empty the cache (unless
        ``keep_cache``), read the start.

        The driver's per-process list (NVML) is read only where another process has
        device memory; alone on a device, ``cudaMemGetInfo`` says the same for less.
        """
        if self._open or self._starts:
            raise RuntimeError("cgmem: a region is measured once; make a new one")
        here = self._home()
        if self.devices:
            count = allocator.device_count()
            if max(self.devices) >= count:
                raise CgmemUsageError(
                    f"cgmem.measure: devices must be indices of the {count} CUDA device(s) "
                    f"visible here (0 to {count - 1}), got {list(self.devices)}"
                )
        warm_up(here)
        watched = self._watched()
        active = [i for i in watched if i == here or current(allocator.stats(i), "reserved_bytes")]
        for i in active:
            allocator.synchronize(i)
        if not self.keep_cache:
            allocator.empty_cache()
        readings = {i: allocator.stats(i) for i in watched}
        stale = [
            i
            for i in active
            if _clean.get(i) != (current(readings[i], "allocated_bytes"), _stream_id(i))
        ]
        if stale:
            # dropping the workspaces drops every device's: each used device gets its own back
            _reset_workspaces(active)
            if not self.keep_cache:
                allocator.empty_cache()
            readings.update({i: allocator.stats(i) for i in active})
        meter = nvml()
        for i in watched:
            stats = readings[i]
            for outer in _active:
                outer._fold_peaks(i, stats)
            if i in active or allocator.has_context(i):
                # a device without a context has no peaks to reset, and under
                # cudaMallocAsync resetting them would make it one
                allocator.reset_peaks(i)
            processes: dict[int, int] | None = None
            used_total: int | None = None
            if i in active:
                if meter.others_present(i):
                    processes = meter.processes(i)
                free, total = allocator.mem_info(i)
                used_total = total - free
            allocated = current(stats, "allocated_bytes")
            reserved = current(stats, "reserved_bytes")
            self._starts[i] = _Start(
                allocated,
                reserved,
                int(stats.get("num_ooms", 0)),
                processes,
                used_total,
                allocated,
                reserved,
                workspace=i in active,
            )
        self._open_now()
        return self

    def _open_now(self) -> None:
        count_measurement()
        _active.append(self)
        self._open = True
        if self.track_graphs:
            self._track_graphs()
        self._t0 = time.perf_counter()

    @classmethod
    def since_cuda_started(cls, label: str | None, *, keep_cache: bool = False) -> Region:
        """A region for code that started CUDA itself: it opens now, as if at CUDA's start.

        Before CUDA started nothing was allocated or reserved and the peaks were never
        reset, so allocated, reserved and their peaks are the code's own, with or without
        ``keep_cache`` (which then only spares the leak check's emptying). The driver's
        figures are not: the context itself took them, so ``device`` and ``non_torch``
        are unknown, and so are the graph figures (no tracking was listening).
        """
        region = cls(label, track_graphs=False, keep_cache=keep_cache)
        for i in range(allocator.device_count()):
            region._starts[i] = _Start(0, 0, 0, None, None, late=True)
        region._open_now()
        return region

    def started_at(self, t0: float) -> None:
        """Count the region's time from ``t0`` (a ``time.perf_counter()`` reading)."""
        self._t0 = t0

    def _track_graphs(self) -> None:
        """Log CUDA graph captures and replays; fills graph_pool, graphs and replays."""
        log = GraphLog().start()
        self.trackers.append(log)
        self.probes.append(log.figures)

    def _stop_trackers(self) -> None:
        while self.trackers:
            self.trackers.pop().stop(measure_pools=False, linger=self.linger_tracking)

    def stop(self, error: BaseException | None = None) -> RegionResult:
        """Close the region; always leaves the tracker clean, even when reading fails.

        A region ended by ``error`` measures no leak (None), as PyTorch's own check skips a
        test that raised: the error's traceback holds the frames, and so the tensors, of
        the code that raised, and confirming a leak then would only pay a full garbage
        collection to find them."""
        if not self._open:
            raise RuntimeError("cgmem: region was not started")
        seconds = time.perf_counter() - self._t0
        try:
            self._stop_trackers()
            figures = self._read_all(raised=error is not None)
        finally:
            self._stop_trackers()
            self._open = False
            if self in _active:
                _active.remove(self)
        message = None if error is None else f"{type(error).__name__}: {error}".splitlines()[0]
        unavailable = allocator.unavailable_figures()
        if any(self._cache_kept(start) for start in self._starts.values()):
            unavailable.update(dict.fromkeys(names(from_empty_cache=True), CACHE_KEPT))
        extra: dict[str, Any] = {"unavailable": unavailable} if unavailable else {}
        if self.rank is not None:
            extra["rank"] = self.rank
        return RegionResult(self.label, tuple(figures), seconds, message, extra)

    def _read_all(self, raised: bool) -> list[DeviceFigures]:
        here = self._home()
        used: list[tuple[int, dict[str, Any]]] = []
        for i, start in self._starts.items():
            if start.used_total is not None or (start.late and allocator.has_context(i)):
                allocator.synchronize(i)
            stats = allocator.stats(i)
            touched = (
                i == here
                or current(stats, "allocated_bytes", "peak") > start.allocated
                or current(stats, "reserved_bytes") != start.reserved
            )
            if touched:
                if start.used_total is None and not start.late:
                    allocator.synchronize(i)
                    stats = allocator.stats(i)
                used.append((i, stats))
        return [self._figures(i, stats, raised) for i, stats in used]

    def _figures(self, index: int, stats: dict[str, Any], raised: bool) -> DeviceFigures:
        start = self._starts[index]
        self._fold_peaks(index, stats)
        allocated = current(stats, "allocated_bytes")
        reserved = current(stats, "reserved_bytes")
        peak = start.peak_allocated - start.allocated
        reserved_peak = start.peak_reserved - start.reserved
        device, source, disturbed = self._device_growth(index, start, reserved)
        leak = allocated - start.allocated
        leak_confirmed, gc_freed = False, 0
        if raised:
            _clean.pop(index, None)
        elif leak > 0:
            for hook in self.before_leak_check:
                hook(index)
            leak, leak_confirmed, gc_freed = self._confirm_leak(index, start)
        elif leak == 0 and start.workspace:
            _clean[index] = (allocated, _stream_id(index))
        else:
            _clean.pop(index, None)  # the code freed memory: a workspace, maybe
        figures = dict(_NO_FIGURES)
        figures["peak"] = peak
        figures["reserved"] = reserved_peak
        figures["leak"] = None if raised else max(leak, 0)
        figures["device"] = device
        figures["non_torch"] = None if device is None else device - (reserved - start.reserved)
        figures["reserved_ratio"] = reserved_peak / peak if peak > 0 else None
        if self._cache_kept(start):
            figures.update(dict.fromkeys(names(from_empty_cache=True)))
        for probe in self.probes:
            figures.update(probe(index))
        if start.late:
            figures.update({m: None for m in names(graph=True)})
        details = Details(
            allocated_start=start.allocated,
            reserved_start=start.reserved,
            allocated_end=allocated,
            reserved_end=reserved,
            device_source=source,
            disturbed=disturbed,
            ooms=int(stats.get("num_ooms", 0)) - start.ooms,
            leak_confirmed=leak_confirmed,
            gc_freed=gc_freed,
        )
        return DeviceFigures.of(index, figures, details)

    def _device_growth(
        self, index: int, start: _Start, reserved: int
    ) -> tuple[int | None, str, bool]:
        """This process's device memory growth: NVML's per-process figure where another
        process is on the device, else ``cudaMemGetInfo`` (NVML is asked only when the
        driver's growth and torch's differ, to tell our own memory from another's)."""
        if start.late:
            return None, "n/a: CUDA started inside the region", False
        if start.used_total is None:
            # not read at the start: the device held nothing of ours then, and asking the
            # driver about it could have made this process a context there
            return None, IDLE_AT_START, False
        meter = nvml()
        if start.processes is not None:
            processes = meter.processes(index)
            own_now, own_then = meter.own(processes), meter.own(start.processes)
            if own_now is not None:
                others_moved = meter.others(processes) - meter.others(start.processes)
                return (
                    own_now - (own_then or 0),
                    "nvml",
                    abs(others_moved) > _DISTURBANCE_SLACK,
                )
        free, total = allocator.mem_info(index)
        growth = (total - free) - start.used_total
        disturbed = False
        if abs(growth - (reserved - start.reserved)) > _DISTURBANCE_SLACK and meter.ok:
            disturbed = meter.others_present(index, max_age=0.0)
        return growth, "cudaMemGetInfo", disturbed

    def _confirm_leak(self, index: int, start: _Start) -> tuple[int, bool, int]:
        """PyTorch's leak check, cheapest step first: drop the cuBLAS workspaces (a new
        stream's is no leak), then collect garbage, young generations first (the code's
        own garbage is young; a full collection costs ~0.3 s in a big heap) and a full
        collection only if the leak persists, then empty the cache (unless ``keep_cache``:
        the driver's growth then counts what the region added to the cache as well).

        Only reached when allocated bytes grew, so passing tests never pay for it.
        Returns the persisting leak, whether the driver's figure grew as well, and the
        bytes garbage collection freed (which may include garbage from before the region).
        """

        def settled() -> int:
            """Allocated bytes with the workspaces as at the start: the current stream's,
            or none where the device was idle at the start or CUDA started inside the
            region."""
            if start.workspace:
                _reset_workspaces([index])
            else:
                allocator.clear_cublas_workspaces()
            allocator.synchronize(index)
            return allocator.allocated_reserved(index)[0]

        allocated = before_gc = settled()
        for generation in (0, 1, 2):
            if allocated <= start.allocated:
                break
            gc.collect(generation)
            allocated = settled()
        gc_freed = before_gc - allocated
        if not self.keep_cache:
            allocator.empty_cache()
        leak = allocated - start.allocated
        if leak <= 0:
            return 0, False, gc_freed
        own_then = nvml().own(start.processes)
        own_now = nvml().own(nvml().processes(index)) if own_then is not None else None
        if own_now is not None and own_then is not None:
            return leak, own_now > own_then, gc_freed
        free, total = allocator.mem_info(index)
        grew = start.used_total is not None and (total - free) > start.used_total
        return leak, grew, gc_freed


def abandon_all() -> None:
    """Forget every open region (after an interrupted test), so none outlives its test."""
    for open_region in _active:
        open_region._stop_trackers()
    _active.clear()


_SUSPENDABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


def _suspended(tb: TracebackType) -> bool:
    """Whether the traceback entry's frame is a generator's or coroutine's that is
    suspended (it went on past the point the exception left it: a yield fixture that
    caught the error and yielded it on), not finished."""
    frame = tb.tb_frame
    if not frame.f_code.co_flags & _SUSPENDABLE:
        return False
    owner = getattr(frame, "f_generator", None)  # Python 3.14+
    if owner is not None:
        return any(
            getattr(owner, flag, False) for flag in ("gi_suspended", "cr_suspended", "ag_suspended")
        )
    return frame.f_lasti != tb.tb_lasti


def release_exception_frames(exc: BaseException) -> None:
    """Drop the locals of an exception's frames so tensors it pinned (an OOM's) are freed.

    Clears each frame's cached ``f_locals`` snapshot too: pytest reads it (for
    ``__tracebackhide__``) and on Python < 3.13 that snapshot keeps the locals alive. A
    suspended generator's or coroutine's frame is left alone (a yield fixture that handed
    the error on): clearing it would close it early. A finished one (an async test's) is
    cleared like any other.
    """
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if _suspended(tb):
            tb = tb.tb_next
            continue
        with contextlib.suppress(Exception):
            frame.f_locals.clear()
        with contextlib.suppress(RuntimeError):
            frame.clear()
        tb = tb.tb_next
    gc.collect(1)  # the frames' own cycles are young; a full collection costs 10-100 ms
    allocator.empty_cache()
