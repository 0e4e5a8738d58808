"""Where the memory went: analysis of allocator snapshots (pure).

Works on plain dicts shaped like ``torch.cuda.memory._snapshot()``: ``segments`` (each with
``device``, ``segment_pool_id``, ``total_size``, ``allocated_size``, ``blocks``) and, when
history was recorded, ``device_traces`` (per device, a list of events with ``action``,
``addr``, ``size`` and ``frames``; frames innermost first, each ``filename``, ``line``,
``name``). Nothing here imports torch or pytest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..results.records import RegionResult
from ..units import format_size

Snapshot = Mapping[str, Any]
FrameKey = tuple[str, int, str]
Hider = Callable[[str], bool]

DEFAULT_POOL = (0, 0)
TOP_SITES = 10
TOP_BLOCKS = 12
_HIDDEN_PACKAGES = re.compile(
    r"[/\\](?:site|dist)-packages[/\\](?:torch|_pytest|pytest|pluggy|pytest_cgmem)[/\\]"
    r"|[/\\]pytest_cgmem[/\\]"
)
_HARNESS = re.compile(r"[/\\](?:_pytest|pluggy)[/\\]")
_NATIVE = (".cpp", ".cc", ".cu", ".cuh", ".h", ".hpp", ".c", ".so")


def leaks_and_starts(regions: Iterable[RegionResult]) -> tuple[dict[int, int], dict[int, int]]:
    """Per device, from the regions that measured a leak there: the largest leak, and the
    allocated bytes at the first such region's start. A graph log's or a capture sweep's
    figures measure no leak (it is None) and no start, and figures measured in another
    process (``cgmem_record``, ``cgmem.distributed``'s ranks) are not in this process's
    snapshot, so they count for neither."""
    leaks: dict[int, int] = {}
    starts: dict[int, int] = {}
    for result in regions:
        if result.measured_elsewhere:
            continue
        for figures in result.devices:
            if figures.leak is None:
                continue
            leaks[figures.index] = max(leaks.get(figures.index, 0), int(figures.leak))
            starts.setdefault(figures.index, int(figures.allocated_start))
    return leaks, starts


def make_hider(prefixes: Iterable[str] = ()) -> Hider:
    """A test for frames to skip: torch, pytest, pluggy, the plugin itself, native code.

    ``prefixes`` are the packages' directories as installed; frames below them are hidden,
    and so are frames whose path has ``site-packages/torch/`` (etc.) in it.
    """
    dirs = tuple(os.path.join(os.path.abspath(p), "") for p in prefixes if p)

    def hidden(filename: str) -> bool:
        if not filename or filename == "??" or filename.endswith(_NATIVE):
            return True
        if dirs and os.path.abspath(filename).startswith(dirs):
            return True
        return _HIDDEN_PACKAGES.search(filename) is not None

    return hidden


def frame_key(frame: Mapping[str, Any]) -> FrameKey:
    return (str(frame.get("filename", "?")), int(frame.get("line", 0)), str(frame.get("name", "?")))


def site_of(
    frames: Sequence[Mapping[str, Any]], stacks: int, hidden: Hider
) -> tuple[FrameKey, ...]:
    """The first ``stacks`` frames (innermost first) that are not hidden.

    When every frame is hidden the innermost one is kept, so a site is never blank; an
    allocation recorded without frames has the empty site.
    """
    keys = [frame_key(f) for f in frames]
    shown: list[FrameKey] = []
    for key in keys:
        if shown and _HARNESS.search(key[0]):
            break  # pytest's runner calls the test: what lies further out is the harness
        if not hidden(key[0]):
            shown.append(key)
    if not shown:
        shown = keys[:1]
    return tuple(shown[: max(stacks, 1)])


_OWN = re.compile(r"[/\\]pytest_cgmem[/\\]")


def made_by_plugin(frames: Sequence[Mapping[str, Any]], hidden: Hider) -> bool:
    """Whether pytest-cgmem itself made the allocation (its warm-up after a leak check).

    True when, going outwards from the innermost frame past torch's, the plugin's code comes
    before any frame of the test: every test allocation under a marked test also has the
    plugin's hook on its stack, but further out than the test's own frames.
    """
    for f in frames:
        filename = str(f.get("filename", ""))
        if _OWN.search(filename):
            return True
        if not hidden(filename):
            return False
    return False


@dataclass(frozen=True)
class Alloc:
    """One allocation seen in the trace: its address, its size as the trace records it
    (the bytes requested; torch's allocated figures count the rounded-up block), its stack
    and where in the trace it happened."""

    addr: int
    size: int
    frames: tuple[Mapping[str, Any], ...]
    index: int


@dataclass(frozen=True)
class Site:
    frames: tuple[FrameKey, ...]
    bytes: int
    count: int


def group_sites(allocs: Iterable[Alloc], stacks: int, hidden: Hider) -> list[Site]:
    """Allocations grouped by their trimmed stack; the largest total first."""
    totals: dict[tuple[FrameKey, ...], list[int]] = {}
    for alloc in allocs:
        entry = totals.setdefault(site_of(alloc.frames, stacks, hidden), [0, 0])
        entry[0] += alloc.size
        entry[1] += 1
    sites = [Site(key, b, n) for key, (b, n) in totals.items()]
    sites.sort(key=lambda s: (-s.bytes, -s.count, s.frames))
    return sites


@dataclass(frozen=True)
class Replay:
    """The trace replayed from the region's start."""

    events: int
    peak: int
    peak_index: int
    at_peak: tuple[Alloc, ...]
    at_end: tuple[Alloc, ...]
    curve: tuple[tuple[int, int], ...]
    ooms: tuple[Mapping[str, Any], ...]


def _alloc(event: Mapping[str, Any], index: int) -> Alloc:
    return Alloc(
        int(event.get("addr", 0)),
        int(event.get("size", 0)),
        tuple(event.get("frames") or ()),
        index,
    )


def replay(trace: Sequence[Mapping[str, Any]], allocs_until: int | None = None) -> Replay:
    """Bytes allocated above the start after each event, the peak and what was live there.

    Allocations count from ``alloc`` events and stop counting at ``free_completed``; a free
    of a block allocated before the trace began lowers the running figure too, as it
    lowers torch's allocated bytes. Allocations at or after ``allocs_until`` (torch's own
    work after the region, such as a leak check) are ignored; their frees still count
    for ``at_end``.
    """
    stop = len(trace) if allocs_until is None else min(allocs_until, len(trace))
    live: dict[int, Alloc] = {}
    running = peak = 0
    peak_index = -1
    curve: list[tuple[int, int]] = []
    ooms: list[Mapping[str, Any]] = []
    for i, event in enumerate(trace):
        action = event.get("action")
        if action == "alloc":
            if i >= stop:
                continue
            alloc = _alloc(event, i)
            live[alloc.addr] = alloc
            running += alloc.size
            if running > peak:
                peak, peak_index = running, i
        elif action == "free_completed":
            gone = live.pop(int(event.get("addr", 0)), None)
            if i < stop:
                running -= gone.size if gone is not None else int(event.get("size", 0))
        elif action == "oom":
            ooms.append(event)
            continue
        else:
            continue
        if i < stop:
            curve.append((i, running))
    at_peak: dict[int, Alloc] = {}
    for i, event in enumerate(trace[: peak_index + 1]):
        action = event.get("action")
        if action == "alloc":
            alloc = _alloc(event, i)
            at_peak[alloc.addr] = alloc
        elif action == "free_completed":
            at_peak.pop(int(event.get("addr", 0)), None)
    return Replay(
        events=stop,
        peak=peak,
        peak_index=peak_index,
        at_peak=tuple(at_peak.values()),
        at_end=tuple(live.values()),
        curve=tuple(curve),
        ooms=tuple(ooms),
    )


@dataclass(frozen=True)
class PoolUsage:
    """A device's segments in one memory pool."""

    device: int
    pool: tuple[int, int]
    segments: int
    reserved: int
    allocated: int
    blocks: tuple[int, ...]  # sizes of the active (allocated) blocks, largest first

    @property
    def kind(self) -> str:
        return "default" if self.pool == DEFAULT_POOL else "graph/private"


def pool_of(segment: Mapping[str, Any]) -> tuple[int, int]:
    raw = segment.get("segment_pool_id", DEFAULT_POOL)
    try:
        first, second = raw
        return (int(first), int(second))
    except (TypeError, ValueError):
        return DEFAULT_POOL


def _active_blocks(segment: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [b for b in segment.get("blocks", ()) if b.get("state") == "active_allocated"]


def segments_by_pool(snapshot: Snapshot, device: int | None = None) -> list[PoolUsage]:
    """Segments grouped by (device, pool): the default pool first, then graph pools."""
    groups: dict[tuple[int, tuple[int, int]], list[Mapping[str, Any]]] = {}
    for segment in snapshot.get("segments", ()):
        index = int(segment.get("device", 0))
        if device is None or index == device:
            groups.setdefault((index, pool_of(segment)), []).append(segment)
    usages = []
    for (index, pool), segments in groups.items():
        sizes = sorted(
            (int(b.get("size", 0)) for s in segments for b in _active_blocks(s)), reverse=True
        )
        usages.append(
            PoolUsage(
                index,
                pool,
                len(segments),
                sum(int(s.get("total_size", 0)) for s in segments),
                sum(int(s.get("allocated_size", 0)) for s in segments),
                tuple(sizes),
            )
        )
    usages.sort(key=lambda u: (u.device, u.pool != DEFAULT_POOL, u.pool))
    return usages


def trace_of(snapshot: Snapshot | None, device: int) -> list[Mapping[str, Any]]:
    if snapshot is None:
        return []
    traces = snapshot.get("device_traces") or []
    return list(traces[device]) if device < len(traces) else []


@dataclass(frozen=True)
class DeviceDiagnosis:
    """What a failing region's device shows: pools, and with history the sites."""

    device: int
    pools: tuple[PoolUsage, ...]
    history: bool
    replay: Replay | None
    peak_sites: tuple[Site, ...]
    leak_sites: tuple[Site, ...]
    truncated: bool
    leaked_sizes: tuple[int, ...]  # the sizes of the blocks in ``leak_sites``, largest first


def diagnose_device(
    snapshot: Snapshot,
    device: int,
    *,
    before_leak_check: Snapshot | None = None,
    history: bool = False,
    stacks: int = 4,
    hidden: Hider | None = None,
    max_entries: int | None = None,
) -> DeviceDiagnosis:
    """Analyse one device of the snapshot taken at the end of a failing region.

    ``before_leak_check`` is the snapshot taken just before the leak check's own clean-up
    ran (gc, cuBLAS workspaces, empty_cache); its trace length marks the region's end in
    the later trace, so allocations made by the clean-up are not blamed on the test.
    """
    hide = hidden or make_hider()
    trace = trace_of(snapshot, device)
    boundary: int | None = None
    truncated = False
    if before_leak_check is not None:
        earlier = trace_of(before_leak_check, device)
        boundary = len(earlier)
        if max_entries is not None and len(trace) >= max_entries:
            # the ring buffer wrapped after the boundary: positions no longer line up
            trace, boundary, truncated = earlier, None, True
    if max_entries is not None and len(trace) >= max_entries:
        truncated = True
    result = replay(trace, boundary) if history else None
    peak_sites: tuple[Site, ...] = ()
    leak_sites: tuple[Site, ...] = ()
    leaked_sizes: tuple[int, ...] = ()
    if result is not None:
        at_peak = [a for a in result.at_peak if not made_by_plugin(a.frames, hide)]
        at_end = [a for a in result.at_end if not made_by_plugin(a.frames, hide)]
        peak_sites = tuple(group_sites(at_peak, stacks, hide))
        leak_sites = tuple(group_sites(at_end, stacks, hide))
        leaked_sizes = tuple(sorted((a.size for a in at_end), reverse=True))
    return DeviceDiagnosis(
        device,
        tuple(segments_by_pool(snapshot, device)),
        history,
        result,
        peak_sites,
        leak_sites,
        truncated,
        leaked_sizes,
    )


# --- text -------------------------------------------------------------------------------


def short_path(filename: str, roots: Sequence[str] = ()) -> str:
    """The path relative to the first root that contains it, else as recorded."""
    for root in roots:
        if not root:
            continue
        prefix = os.path.join(os.path.abspath(root), "")
        if filename.startswith(prefix):
            return filename[len(prefix) :]
    return filename


def format_frame(frame: FrameKey, roots: Sequence[str] = ()) -> str:
    filename, line, name = frame
    return f"{short_path(filename, roots)}:{line} in {name}"


def site_lines(
    sites: Sequence[Site], roots: Sequence[str] = (), limit: int = TOP_SITES
) -> list[str]:
    """``size  N blocks  file:line in function`` per site, callers indented below it."""
    lines = []
    for site in sites[:limit]:
        blocks = f"{site.count} block" + ("" if site.count == 1 else "s")
        head = format_frame(site.frames[0], roots) if site.frames else "(no stack recorded)"
        lines.append(f"  {format_size(site.bytes):>12}  {blocks:<10}  {head}")
        lines.extend(f"{'':>28}  from {format_frame(f, roots)}" for f in site.frames[1:])
    if len(sites) > limit:
        rest = sites[limit:]
        lines.append(
            f"  {format_size(sum(s.bytes for s in rest)):>12}  in {len(rest)} more site(s)"
        )
    return lines


def _sizes(sizes: Sequence[int], limit: int = TOP_BLOCKS) -> str:
    counted: dict[int, int] = {}
    for size in sizes:
        counted[size] = counted.get(size, 0) + 1
    parts = [f"{format_size(s)}" + (f" x{n}" if n > 1 else "") for s, n in counted.items()]
    text = ", ".join(parts[:limit])
    if len(parts) > limit:
        text += f", ... ({len(parts) - limit} more sizes)"
    return text or "none"


def pool_lines(pools: Sequence[PoolUsage]) -> list[str]:
    lines = []
    for usage in pools:
        lines.append(
            f"  pool {usage.pool} {usage.kind:<13} {usage.segments:>3} segment(s)  "
            f"reserved {format_size(usage.reserved):>11}  allocated "
            f"{format_size(usage.allocated):>11}  {len(usage.blocks)} active block(s)"
        )
    return lines or ["  (no segments)"]


def render(
    diagnosis: DeviceDiagnosis,
    *,
    leak: int = 0,
    allocated_start: int = 0,
    roots: Sequence[str] = (),
) -> list[str]:
    """The lines a failing test's cgmem section gets for one device."""
    where = f"cuda:{diagnosis.device}"
    lines = [f"allocator segments at the end of the region by pool ({where}):"]
    lines += pool_lines(diagnosis.pools)
    result = diagnosis.replay
    if leak > 0 and (result is None or not diagnosis.history):
        sizes = [s for usage in diagnosis.pools for s in usage.blocks]
        lines.append(
            f"active blocks at the end ({where}), largest first; the leak of "
            f"{format_size(leak)} is among them: {_sizes(sorted(sizes, reverse=True))}"
        )
        lines.append(
            f"  ({format_size(allocated_start)} was allocated before the region; "
            "--cgmem-history names the leaked blocks and the lines that allocated them)"
        )
    if result is None:
        if not diagnosis.history:
            lines.append(
                "  (run with --cgmem-history to see the allocation sites live at the peak)"
            )
        return lines
    if diagnosis.truncated:
        lines.append(
            f"  note: the history buffer filled up ({result.events} events kept); early "
            "events of the region are lost: raise --cgmem-history-entries"
        )
    if result.peak_index < 0:
        lines.append(f"allocation sites live at the peak ({where}): no allocation in the history")
    else:
        lines.append(
            f"allocation sites live at the peak ({where}: +{format_size(result.peak)} at "
            f"event {result.peak_index + 1} of {result.events}):"
        )
        lines += site_lines(diagnosis.peak_sites, roots)
    for oom in result.ooms:
        lines.append(
            f"  CUDA out of memory: {format_size(int(oom.get('size', 0)))} requested with "
            f"{format_size(int(oom.get('device_free', 0)))} free on the device"
        )
    if leak > 0:
        kept = sum(s.bytes for s in diagnosis.leak_sites)
        count = sum(s.count for s in diagnosis.leak_sites)
        lines.append(
            f"leaked blocks by allocation site ({where}: {format_size(kept)} in {count} "
            f"block(s) allocated in the region and still live): "
            f"{_sizes(diagnosis.leaked_sizes)}"
        )
        lines += site_lines(diagnosis.leak_sites, roots)
    return lines
